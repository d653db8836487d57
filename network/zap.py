"""Our ZAP (ZeroMQ Authentication Protocol, RFC 27) handler: admit only CURVE clients whose key is on the roster.

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` of a socket's context whether to accept each incoming
CURVE connection.  We answer with the node id as User-Id, so a receiver learns who sent a frame from the
authenticated connection (``frame.get("User-Id")``), never from a routing id the peer chose.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import zmq
from zmq.utils import z85

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_ZAP_VERSION = b"1.0"
_POLL_MS = 50


class ZapHandler:
    """A thread answering ZAP requests on ``context``; start it before binding the server socket.

    ``keys`` maps node id to its Z85 public key.  Denied clients are counted; only the first 8 Z85 characters of
    the last denied key are kept (enough to spot a misconfigured node, never a whole key in a log).
    """

    def __init__(self, context: zmq.Context, keys: Mapping[int, bytes], *, domain: bytes) -> None:
        self._users: dict[bytes, bytes] = {bytes(key): str(node).encode("ascii") for node, key in keys.items()}
        self._domain = domain
        self._lock = threading.Lock()
        self._denied = 0
        self._last_denied = ""
        self._stop = threading.Event()
        self._socket = context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(ZAP_ENDPOINT)
        # The socket is handed to the thread: from here on only the thread touches it (zmq sockets are not
        # thread-safe), and it closes it on the way out.
        self._thread = threading.Thread(target=self._serve, name="smpc-zap", daemon=True)
        self._thread.start()

    @property
    def denied(self) -> int:
        """How many connections were refused so far."""
        with self._lock:
            return self._denied

    @property
    def last_denied_key(self) -> str:
        """First 8 Z85 characters of the last refused client key ("" if none, "-" if it was not CURVE)."""
        with self._lock:
            return self._last_denied

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (it closes its socket); idempotent.  Must run before the context is terminated."""
        self._stop.set()
        self._thread.join(timeout)

    def _serve(self) -> None:
        """Answer requests until stopped; poll with a short timeout so a stop is noticed promptly."""
        try:
            while not self._stop.is_set():
                if self._socket.poll(_POLL_MS, zmq.POLLIN):
                    self._socket.send_multipart(self._safe_answer(self._socket.recv_multipart()))
        except zmq.ZMQError:
            pass  # the context is going away; nothing left to authenticate
        finally:
            self._socket.close(linger=0)

    def _safe_answer(self, request: list[bytes]) -> list[bytes]:
        """``_answer``, but a deny on any surprise: if this thread died, libzmq would admit clients unchecked."""
        try:
            return self._answer(request)
        except Exception:  # noqa: BLE001 - a bug here must fail closed, never open
            self._note_denial(b"", [])
            return [_ZAP_VERSION, request[1] if len(request) > 1 else b"", b"400", b"internal error", b"", b""]

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request: 200 with the node id for a roster key, 400 for anything else."""
        if len(request) < 6 or request[0] != _ZAP_VERSION:
            return [_ZAP_VERSION, request[1] if len(request) > 1 else b"", b"400", b"malformed ZAP request", b"", b""]
        request_id, domain, mechanism, credentials = request[1], request[2], request[5], request[6:]
        user = None
        if mechanism == b"CURVE" and domain == self._domain and len(credentials) == 1 and len(credentials[0]) == 32:
            user = self._users.get(z85.encode(credentials[0]))
        if user is None:
            self._note_denial(mechanism, credentials)
            return [_ZAP_VERSION, request_id, b"400", b"key not on the roster", b"", b""]
        return [_ZAP_VERSION, request_id, b"200", b"OK", user, b""]

    def _note_denial(self, mechanism: bytes, credentials: list[bytes]) -> None:
        """Count a refusal and remember a short prefix of the refused key."""
        prefix = "-"
        if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
            prefix = z85.encode(credentials[0])[:8].decode("ascii")
        with self._lock:
            self._denied += 1
            self._last_denied = prefix
