"""ZmqTransport: the real network, ZeroMQ over TCP, every link encrypted and authenticated with CurveZMQ.

Each node binds one ROUTER (a CURVE server whose ZAP handler admits only roster keys, and which admits nobody if
that handler stops answering) and opens one DEALER per peer (a CURVE client pinned to that peer's roster key).  A
node sends on its DEALERs and receives on its ROUTER; the sender of a frame is the User-Id our ZAP handler gave the
authenticated connection, never a routing id.

Set-up is two-phase so that local runs can use random ports: construct (binds, ``endpoint`` tells the port), then
``connect(addresses)`` (HELLO exchange, fails with HandshakeError).  Liveness comes from ZeroMQ heartbeats on
every connection and a socket monitor per DEALER: a peer that dies or freezes shows up as a disconnect within about
``heartbeat_interval + heartbeat_timeout`` seconds, and every waiting ``recv`` raises PeerLostError naming it.

A transport belongs to one thread (ZeroMQ sockets are not thread-safe); its ZAP handler runs in a thread of its own.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .base import TransportStats, check_wire_array, node_name
from .errors import (
    HandshakeError,
    NetworkError,
    PeerClosedError,
    PeerLostError,
    ProtocolError,
    ReceiveTimeout,
    duplicate_tag,
)
from .framing import (
    CHUNK_BYTES,
    HEADER_SIZE,
    SESSION_ID_BYTES,
    Frame,
    Kind,
    decode_frame,
    encode_header,
    join_chunks,
    json_payload,
    payload_chunks,
)
from .roster import check_z85_key
from .zap import ZapHandler

ZAP_DOMAIN = b"smpc"
_HWM = 1_000_000  # messages; protocols must never block or drop, so the queues are effectively unbounded
_MAXMSGSIZE_SLACK = 4096  # CURVE adds a few dozen bytes to every frame
_LOSS_GRACE_S = 0.25  # after a disconnect, how long a BYE already on its way still counts as a clean goodbye
_ABORT_REASON_CHARS = 300
_FLUSH_LINGER_MS = 1000
_MONITORED_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass
class _Link:
    """Everything we know about one peer: our DEALER to it and the state of its frames to us."""

    node: int
    name: str
    endpoint: str
    socket: zmq.Socket
    monitor: zmq.Socket
    send_seq: int = 0
    recv_seq: int = 0
    hello: bool = False  # its HELLO reached us and passed the checks
    linked: bool = False  # our CURVE handshake with it succeeded
    bye: bool = False
    aborted: bool = False
    abort_reason: str = ""
    lost: bool = False
    handshake_failure: str = ""

    @property
    def gone(self) -> bool:
        """The peer will send nothing more: it said goodbye, aborted or was lost."""
        return self.bye or self.aborted or self.lost


@dataclass
class _Options:
    """Timeouts and limits, in the units ZeroMQ wants."""

    recv_timeout: float
    connect_timeout: float
    close_timeout: float
    heartbeat_ivl_ms: int
    heartbeat_timeout_ms: int
    max_message_bytes: int


class ZmqTransport:
    """One node's end of a CurveZMQ-encrypted session; implements ``network.base.Transport``.

    ``public_key``/``secret_key`` are this node's Z85 keys, ``roster_keys`` maps every node id (self included) to
    its Z85 public key, ``handshake`` holds the session parameters every peer must agree on exactly (compared in
    the HELLO), ``names`` is how errors name nodes.  Binding happens here; ``endpoint`` is the address bound.
    """

    def __init__(
        self,
        rank: int,
        *,
        public_key: bytes,
        secret_key: bytes,
        roster_keys: Mapping[int, bytes],
        session_id: bytes,
        handshake: Mapping[str, object],
        bind: str = "tcp://127.0.0.1:0",
        names: Mapping[int, str] | None = None,
        recv_timeout: float = 120.0,
        connect_timeout: float = 60.0,
        close_timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 4.0,
        max_message_bytes: int = 1 << 30,
    ) -> None:
        self._rank = rank
        self._public_key = check_z85_key(public_key, "public_key")
        self._secret_key = check_z85_key(secret_key, "secret_key")
        self._roster_keys = _check_roster_keys(rank, self._public_key, self._secret_key, roster_keys)
        self._session_id = _check_session_id(session_id)
        self._handshake = _normalise_handshake(handshake)
        self._names = dict(names) if names else {}
        self._options = _Options(
            recv_timeout=_positive(recv_timeout, "recv_timeout"),
            connect_timeout=_positive(connect_timeout, "connect_timeout"),
            close_timeout=max(0.0, float(close_timeout)),
            heartbeat_ivl_ms=_millis(heartbeat_interval, "heartbeat_interval"),
            heartbeat_timeout_ms=_millis(heartbeat_timeout, "heartbeat_timeout"),
            max_message_bytes=int(_positive(max_message_bytes, "max_message_bytes")),
        )
        self._stats = TransportStats()
        self._links: dict[int, _Link] = {}
        self._mailbox: dict[tuple[int, int], np.ndarray] = {}
        self._closed = False
        self._context = zmq.Context()
        try:
            self._zap = ZapHandler(self._context, self._roster_keys, domain=ZAP_DOMAIN)
            self._router = self._bind_router(bind)
        except BaseException:
            self._context.destroy(linger=0)
            raise
        self._endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)

    # ----------------------------------------------------------------------------------------------- properties

    @property
    def rank(self) -> int:
        """This node's id."""
        return self._rank

    @property
    def peers(self) -> tuple[int, ...]:
        """Ids of the nodes given to ``connect`` (empty before)."""
        return tuple(sorted(self._links))

    @property
    def stats(self) -> TransportStats:
        """DATA traffic per peer (header plus payload bytes); HELLO, BYE and ABORT are not counted."""
        return self._stats

    @property
    def endpoint(self) -> str:
        """The endpoint actually bound, e.g. ``tcp://127.0.0.1:40123`` (port 0 resolved)."""
        return self._endpoint

    @property
    def refused_connections(self) -> int:
        """How many incoming connections our ZAP handler refused (keys not on the roster)."""
        return self._zap.denied

    @property
    def last_refused_key(self) -> str:
        """First 8 Z85 characters of the last refused client key, "" if none."""
        return self._zap.last_denied_key

    @property
    def closed(self) -> bool:
        """Whether ``close`` has run."""
        return self._closed

    def __enter__(self) -> ZmqTransport:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.close(abort=exc_type is not None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ZmqTransport(rank={self._rank}, endpoint={self._endpoint!r}, peers={self.peers}, {state})"

    # --------------------------------------------------------------------------------------------------- set-up

    def connect(self, addresses: Mapping[int, str]) -> None:
        """Connect to ``addresses`` (peer id -> endpoint), exchange HELLOs and check them; call once.

        Returns when every peer's HELLO has arrived and passed the checks and our CURVE handshake with every peer
        has succeeded.  On any failure the transport is closed (peers get an ABORT) and HandshakeError says which
        peer and what differed, e.g. ``party 1 has frac_bits=12, we have frac_bits=16``.
        """
        if self._closed or self._links:
            raise NetworkError("connect() may be called once, on a transport that is not closed")
        peers = self._check_addresses(addresses)
        try:
            for node, endpoint in peers.items():
                self._links[node] = self._open_link(node, endpoint)
            hello = json_payload({"rank": self._rank, "session": self._session_id.hex(), "handshake": self._handshake})
            for link in self._links.values():
                self._send_frame(link, Kind.HELLO, 0, hello)
            self._await_hellos(time.monotonic() + self._options.connect_timeout)
        except NetworkError as error:
            self._shutdown(abort=True, reason=str(error))
            if isinstance(error, HandshakeError):
                raise
            raise HandshakeError(str(error)) from error
        except BaseException:
            self._shutdown(abort=True, reason="set-up interrupted")
            raise

    def _check_addresses(self, addresses: Mapping[int, str]) -> dict[int, str]:
        """Validate the peer map: roster nodes other than ourselves, tcp endpoints."""
        peers = {int(node): str(endpoint) for node, endpoint in sorted(addresses.items())}
        if not peers:
            raise ValueError("connect() needs at least one peer")
        for node, endpoint in peers.items():
            if node == self._rank:
                raise ValueError(f"{self._name(node)} is this node; do not list it among its peers")
            if node not in self._roster_keys:
                raise ValueError(f"{self._name(node)} has no public key in the roster")
            if not endpoint.startswith("tcp://"):
                raise ValueError(f"address of {self._name(node)} must be a tcp:// endpoint, got {endpoint!r}")
        return peers

    def _bind_router(self, bind: str) -> zmq.Socket:
        """Our CURVE server socket, bound at ``bind`` (port 0 picks a free port)."""
        router = self._context.socket(zmq.ROUTER)
        try:
            self._apply_common_options(router)
            router.curve_server = True
            router.curve_secretkey = self._secret_key
            router.curve_publickey = self._public_key
            router.zap_domain = ZAP_DOMAIN
            # Without it libzmq admits ANY CURVE client when no ZAP handler answers (our thread stopped or died).
            router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            router.bind(bind)
        except BaseException as error:
            router.close(linger=0)
            if isinstance(error, zmq.ZMQError):
                hint = ("; another program, or an earlier node still running, holds that port: stop it or give "
                        "this node another port in the roster") if error.errno == zmq.EADDRINUSE else ""
                raise NetworkError(f"cannot bind {bind!r}: {error.strerror}{hint}") from error
            raise
        return router

    def _open_link(self, node: int, endpoint: str) -> _Link:
        """A monitored DEALER pinned to ``node``'s roster key, connecting to ``endpoint``."""
        dealer = self._context.socket(zmq.DEALER)
        self._apply_common_options(dealer)
        dealer.curve_secretkey = self._secret_key
        dealer.curve_publickey = self._public_key
        dealer.curve_serverkey = self._roster_keys[node]
        dealer.setsockopt(zmq.SNDTIMEO, _seconds_to_ms(self._options.recv_timeout))
        monitor = dealer.get_monitor_socket(_MONITORED_EVENTS)
        link = _Link(node=node, name=self._name(node), endpoint=endpoint, socket=dealer, monitor=monitor)
        self._poller.register(monitor, zmq.POLLIN)
        try:
            dealer.connect(endpoint)
        except zmq.ZMQError as error:
            raise ValueError(f"cannot connect to {link.name} at {endpoint!r}: {error.strerror}") from error
        return link

    def _apply_common_options(self, socket: zmq.Socket) -> None:
        """LINGER 0, frame size cap, heartbeats and large queues, on both socket kinds."""
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, CHUNK_BYTES + HEADER_SIZE + _MAXMSGSIZE_SLACK)
        socket.setsockopt(zmq.HEARTBEAT_IVL, self._options.heartbeat_ivl_ms)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, self._options.heartbeat_timeout_ms)
        socket.setsockopt(zmq.HEARTBEAT_TTL, min(self._options.heartbeat_timeout_ms, 6_553_500))
        socket.setsockopt(zmq.SNDHWM, _HWM)
        socket.setsockopt(zmq.RCVHWM, _HWM)
        socket.setsockopt(zmq.IMMEDIATE, 0)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)

    def _await_hellos(self, deadline: float) -> None:
        """Pump until every peer is ready, raising HandshakeError on a refusal, an abort, a loss or the deadline."""
        while True:
            self._raise_link_failure()
            waiting = [link for link in self._links.values() if not (link.hello and (link.linked or link.bye))]
            if not waiting:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HandshakeError(self._set_up_timeout_message(waiting))
            self._pump(remaining)

    def _raise_link_failure(self) -> None:
        """HandshakeError if any peer refused our key, aborted or was lost during set-up."""
        for link in self._links.values():
            if link.handshake_failure:
                raise HandshakeError(link.handshake_failure)
            if link.aborted:
                raise HandshakeError(f"{link.name} aborted the set-up: {link.abort_reason}")
            if link.lost:
                raise HandshakeError(f"lost {link.name} during set-up")

    def _set_up_timeout_message(self, waiting: list[_Link]) -> str:
        """Why set-up timed out, naming each peer we still wait for and what is missing from it."""
        parts = []
        for link in waiting:
            missing = "its HELLO" if not link.hello else "our CURVE handshake with it"
            parts.append(f"{link.name} at {link.endpoint} ({missing} missing)")
        message = f"set-up timed out after {self._options.connect_timeout:g} s waiting for " + ", ".join(parts)
        if self._zap.denied:
            # Not a reason to give up early: anyone who can reach the port can present a stranger's key.
            message += (
                f"; meanwhile refused {self._zap.denied} connection(s) from a key not on the roster (last one "
                f"starts {self._zap.last_denied_key}): does a peer use the wrong key file or roster?"
            )
        return message

    def _check_hello(self, link: _Link, frame: Frame) -> None:
        """HandshakeError unless the HELLO's session, rank and handshake parameters match ours exactly."""
        if frame.session_id != self._session_id:
            raise HandshakeError(
                f"{link.name} is in session {frame.session_id.hex()}, we are in session {self._session_id.hex()}"
            )
        body = frame.json()
        if not isinstance(body, dict):
            raise HandshakeError(f"HELLO from {link.name} is not a JSON object")
        if body.get("rank") != link.node:
            raise HandshakeError(f"{link.name} says it is node {body.get('rank')!r} in its HELLO")
        if body.get("session") != self._session_id.hex():
            raise HandshakeError(
                f"{link.name} is in session {body.get('session')!r}, we are in session {self._session_id.hex()}"
            )
        theirs = body.get("handshake")
        if not isinstance(theirs, dict):
            raise HandshakeError(f"HELLO from {link.name} has no handshake parameters")
        differences = _handshake_differences(link.name, theirs, self._handshake)
        if differences:
            raise HandshakeError("; ".join(differences))

    # ----------------------------------------------------------------------------------------------- traffic

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        """Queue ``array`` for ``dst`` under ``tag`` and return; the array is copied, so it may be reused at once.

        Raises PeerLostError / PeerClosedError if ``dst`` is already known to be gone, NetworkError if the queue
        stayed full for ``recv_timeout`` seconds, ValueError / TypeError for an array that cannot be sent.
        """
        link = self._link(dst)
        if link.lost or link.aborted:
            raise PeerLostError(f"cannot send tag {tag} to {link.name}: it is lost", peer=dst)
        if link.bye:
            raise PeerClosedError(f"cannot send tag {tag} to {link.name}: it closed the session", peer=dst)
        started = time.perf_counter()
        # reshape: check_wire_array's np.ascontiguousarray turns a 0-d array into shape (1,)
        wire = check_wire_array(array, self._options.max_message_bytes).reshape(np.shape(array))
        self._send_frame(link, Kind.DATA, tag, wire)
        self._stats.count_sent(dst, HEADER_SIZE + wire.nbytes)
        self._stats.codec_seconds += time.perf_counter() - started

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        """Wait for the message ``src`` sent under ``tag`` (others arriving meanwhile are kept for later).

        Raises PeerLostError if any peer was lost or aborted, PeerClosedError if ``src`` said goodbye without
        sending it, ReceiveTimeout after ``recv_timeout`` seconds, ProtocolError on a bad frame.  The array
        returned may be read-only.
        """
        self._link(src)
        deadline = time.monotonic() + self._options.recv_timeout
        while True:
            array = self._take(src, tag)
            if array is not None:
                return array
            self._raise_if_failed(src, tag, op)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReceiveTimeout(
                    f"no message from {self._name(src)} for {_awaited(op, tag)} within "
                    f"{self._options.recv_timeout:g} s",
                    peer=src,
                )
            self._pump(remaining)

    def _take(self, src: int, tag: int) -> np.ndarray | None:
        """Pop the stashed message for ``(src, tag)``, if any."""
        return self._mailbox.pop((src, tag), None)

    def _raise_if_failed(self, src: int, tag: int, op: str) -> None:
        """Raise if ``src`` or any other peer is lost or aborted, or ``src`` closed without sending ``tag``."""
        what = f"{_awaited(op, tag)} from {self._name(src)}"
        ordered = [self._links[src]] + [link for node, link in sorted(self._links.items()) if node != src]
        for link in ordered:
            if link.aborted:
                raise PeerLostError(
                    f"{link.name} aborted ({link.abort_reason}) while we waited for {what}", peer=link.node
                )
            if link.lost:
                raise PeerLostError(f"lost {link.name} while waiting for {what}", peer=link.node)
        if self._links[src].bye:
            raise PeerClosedError(f"{self._name(src)} closed the session before sending {what}", peer=src)

    def _link(self, node: int) -> _Link:
        """The link to ``node``; NetworkError if the transport is closed or not connected, ValueError if unknown."""
        if self._closed:
            raise NetworkError("transport is closed")
        link = self._links.get(node)
        if link is None:
            if not self._links:
                raise NetworkError("transport is not connected; call connect() first")
            raise ValueError(f"{self._name(node)} is not a peer of {self._name(self._rank)}")
        return link

    def _send_frame(self, link: _Link, kind: Kind, tag: int, wire: np.ndarray) -> None:
        """Send one frame on ``link``; the payload is copied, so the caller may modify ``wire`` right after."""
        header = encode_header(
            kind, session_id=self._session_id, sender=self._rank, seq=link.send_seq, tag=tag, array=wire
        )
        try:
            # copy=True on purpose: libzmq encrypts later, in its own thread, so a zero-copy send would read the
            # caller's array after we return (and pyzmq's zero-copy callbacks crash an interpreter that exits
            # with frames in flight).  CURVE copies into a new buffer anyway; one more memcpy costs little.
            link.socket.send_multipart([header, *payload_chunks(wire)], copy=True)
        except zmq.Again as error:
            raise NetworkError(
                f"could not queue a {kind.name} frame for {link.name} within {self._options.recv_timeout:g} s"
            ) from error
        link.send_seq += 1

    # -------------------------------------------------------------------------------------------------- events

    def _pump(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for traffic or link events, then process everything that is ready."""
        started = time.perf_counter()
        ready = dict(self._poller.poll(_seconds_to_ms(min(timeout_s, 3600.0))))
        self._stats.wait_seconds += time.perf_counter() - started
        if self._router in ready:
            started = time.perf_counter()
            self._drain_router()
            self._stats.codec_seconds += time.perf_counter() - started
        for link in list(self._links.values()):
            if link.monitor in ready:
                self._drain_monitor(link)

    def _drain_router(self) -> None:
        """Accept every message waiting on the ROUTER."""
        while self._router.poll(0, zmq.POLLIN):
            self._accept(self._router.recv_multipart(copy=False))

    def _drain_monitor(self, link: _Link) -> None:
        """Apply every event waiting on ``link``'s monitor."""
        while link.monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(link.monitor)
            self._on_event(link, int(event["event"]), int(event["value"]))

    def _on_event(self, link: _Link, event: int, value: int) -> None:
        """Track our CURVE handshake with the peer and notice when its connection drops."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            link.linked = True
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and not link.linked:
            link.handshake_failure = (
                f"{link.name} refused our key (ZAP status {value}); is our public key in its roster?"
            )
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL) and not link.linked:
            link.handshake_failure = (
                f"CURVE handshake with {link.name} at {link.endpoint} failed: the public key we have for it does "
                "not match its secret key, or it refused ours, or it is not an smpc node"
            )
        elif event == zmq.EVENT_DISCONNECTED and link.linked and not link.gone:
            self._confirm_loss(link)

    def _confirm_loss(self, link: _Link) -> None:
        """Mark ``link`` lost unless its BYE or ABORT, racing the disconnect on the other connection, shows up."""
        give_up = time.monotonic() + _LOSS_GRACE_S
        while not link.gone and time.monotonic() < give_up:
            if self._router.poll(20, zmq.POLLIN):
                self._drain_router()
        if not link.gone:
            link.lost = True

    def _accept(self, parts: list[zmq.Frame]) -> None:
        """Validate one incoming message and apply it: stash DATA, record HELLO, BYE and ABORT."""
        link = self._sender_link(parts[-1])  # every part carries the connection's User-Id; a ROUTER gives >= 2
        if len(parts) < 3:
            raise ProtocolError(
                f"bad frame from {link.name}: message with {len(parts) - 1} part(s); frames have a header and at "
                "least one payload part"
            )
        try:
            payload = join_chunks(parts[2:], max_bytes=self._options.max_message_bytes)
            frame = decode_frame(
                parts[1],
                payload,
                session_id=self._session_id if link.hello else None,
                max_bytes=self._options.max_message_bytes,
            )
        except ProtocolError as error:
            raise ProtocolError(f"bad frame from {link.name}: {error}") from error
        self._check_sequence(link, frame)
        self._apply(link, frame)

    def _sender_link(self, header: zmq.Frame) -> _Link:
        """The link of the authenticated sender (the User-Id our ZAP handler assigned)."""
        try:
            user = header.get("User-Id")
        except zmq.ZMQError:
            user = ""
        if not isinstance(user, str) or not user.isdigit():
            raise ProtocolError("frame from a connection without a roster identity")
        link = self._links.get(int(user))
        if link is None:
            raise ProtocolError(f"frame from {self._name(int(user))}, which is not a peer of {self._name(self._rank)}")
        return link

    def _check_sequence(self, link: _Link, frame: Frame) -> None:
        """The header's sender must be the authenticated one, and frames must arrive exactly in sequence."""
        if frame.sender != link.node:
            raise ProtocolError(
                f"frame over {link.name}'s authenticated link claims to come from {self._name(frame.sender)}"
            )
        if frame.seq != link.recv_seq:
            raise ProtocolError(
                f"replayed or out-of-sequence frame from {link.name} (sequence {frame.seq}, expected {link.recv_seq})"
            )
        if (frame.kind == Kind.HELLO) != (link.recv_seq == 0):
            raise ProtocolError(f"{link.name} sent {frame.kind.name} as frame {frame.seq}; HELLO comes first, once")
        link.recv_seq += 1

    def _apply(self, link: _Link, frame: Frame) -> None:
        """Act on a frame that passed every check."""
        if frame.kind == Kind.HELLO:
            self._check_hello(link, frame)
            link.hello = True
        elif frame.kind == Kind.DATA:
            if (link.node, frame.tag) in self._mailbox:
                raise duplicate_tag(link.name, frame.tag, self._name(self._rank))
            self._mailbox[(link.node, frame.tag)] = frame.array
            self._stats.count_received(link.node, HEADER_SIZE + frame.array.nbytes)
        elif frame.kind == Kind.BYE:
            link.bye = True
        else:
            link.aborted = True
            link.abort_reason = _abort_reason(frame)

    # -------------------------------------------------------------------------------------------------- close

    def close(self, *, abort: bool = False, reason: str = "") -> None:
        """End the session; idempotent, never raises a NetworkError, never hangs.

        Sends BYE (ABORT carrying ``reason`` if ``abort``) to every peer; unless aborting, waits up to
        ``close_timeout`` seconds for every peer's BYE, so our last frames are not cut off by LINGER 0.  Then
        releases sockets and the port.
        """
        self._shutdown(abort=abort, reason=(reason or "aborted by its application") if abort else "")

    def _shutdown(self, *, abort: bool, reason: str) -> None:
        """``close`` with a reason carried in the ABORT frame."""
        if self._closed:
            return
        self._closed = True
        try:
            self._await_goodbyes(time.monotonic())  # learn who is gone already: no BYE, no linger for them
            self._say_goodbye(abort, reason)
            if not abort:
                self._await_goodbyes(time.monotonic() + self._options.close_timeout)
        finally:
            self._release()

    def _say_goodbye(self, abort: bool, reason: str) -> None:
        """Queue a BYE or ABORT for every peer not already gone; a failure to queue is not an error here."""
        kind = Kind.ABORT if abort else Kind.BYE
        body = json_payload({"reason": reason[:_ABORT_REASON_CHARS]} if abort else {})
        for link in self._links.values():
            if link.lost or link.aborted:
                continue
            link.socket.setsockopt(zmq.SNDTIMEO, 0)
            try:
                self._send_frame(link, kind, 0, body)
            except (NetworkError, zmq.ZMQError):
                pass

    def _await_goodbyes(self, deadline: float) -> None:
        """Pump until every peer said BYE (or is gone) or the deadline passes (at least once); errors end the wait."""
        while any(not link.gone for link in self._links.values()):
            remaining = deadline - time.monotonic()
            try:
                self._pump(max(0.0, remaining))
            except (NetworkError, zmq.ZMQError):
                return
            if remaining <= 0:
                return

    def _release(self) -> None:
        """Close every socket, stop the ZAP thread and terminate the context (frees the port).

        Links to peers still running linger up to ``_FLUSH_LINGER_MS`` so our last frames, BYE or ABORT reach
        them even if our CURVE handshake with them is still under way (a set-up refused early); the rest close at
        once.  The lingering sockets flush in parallel, so close never takes much longer than that.
        """
        for link in self._links.values():
            linger = 0 if link.gone else _FLUSH_LINGER_MS
            link.socket.disable_monitor()
            link.monitor.close(linger=0)
            link.socket.close(linger=linger)
        self._router.close(linger=0)
        self._zap.close()
        self._context.destroy(linger=0)
        self._mailbox.clear()

    def _name(self, node: int) -> str:
        """How errors name ``node``."""
        return node_name(node, self._names)


# ------------------------------------------------------------------------------------------- argument checks


def _check_roster_keys(rank: int, public: bytes, secret: bytes, keys: Mapping[int, bytes]) -> dict[int, bytes]:
    """Validated roster keys: all Z85, distinct, ours listed and matching our secret key."""
    checked = {int(node): check_z85_key(key, f"roster key of node {node}") for node, key in keys.items()}
    if rank not in checked:
        raise ValueError(f"roster_keys has no key for this node ({rank})")
    if checked[rank] != public or zmq.curve_public(secret) != public:
        raise ValueError(f"public_key, secret_key and the roster key of node {rank} do not belong together")
    if len(set(checked.values())) != len(checked):
        raise ValueError("two roster nodes share a public key; every node needs its own keypair")
    return checked


def _check_session_id(session_id: bytes) -> bytes:
    """The session id as bytes of the right length."""
    raw = bytes(session_id)
    if len(raw) != SESSION_ID_BYTES:
        raise ValueError(f"session_id must be {SESSION_ID_BYTES} bytes, got {len(raw)}")
    return raw


def _normalise_handshake(handshake: Mapping[str, object]) -> dict[str, Any]:
    """The handshake parameters as they will look after a JSON round trip, so comparisons are exact."""
    try:
        return json.loads(json.dumps(dict(handshake), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"handshake parameters must be JSON values: {error}") from error


def _positive(value: float, what: str) -> float:
    """``value`` as a positive finite float, else ValueError."""
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a positive number of seconds or bytes, got {value!r}")
    return number


def _millis(seconds: float, what: str) -> int:
    """A positive duration in whole milliseconds, as ZeroMQ options want (at least 1)."""
    return max(1, _seconds_to_ms(_positive(seconds, what)))


def _seconds_to_ms(seconds: float) -> int:
    """Seconds to milliseconds, rounded up so short waits do not become busy loops."""
    return max(0, math.ceil(seconds * 1000))


# ----------------------------------------------------------------------------------------- message helpers


def _handshake_differences(name: str, theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """One line per parameter that differs, naming both values."""
    lines = []
    for key in sorted(set(theirs) | set(ours)):
        if key not in theirs:
            lines.append(f"{name} has no {key}, we have {key}={json.dumps(ours[key])}")
        elif key not in ours:
            lines.append(f"{name} has {key}={json.dumps(theirs[key])}, we have no {key}")
        elif theirs[key] != ours[key] or type(theirs[key]) is not type(ours[key]):
            lines.append(f"{name} has {key}={json.dumps(theirs[key])}, we have {key}={json.dumps(ours[key])}")
    return lines


def _awaited(op: str, tag: int) -> str:
    """How errors name what a recv waited for."""
    return f"{op} (tag {tag})" if op else f"tag {tag}"


def _abort_reason(frame: Frame) -> str:
    """The printable, bounded reason an ABORT frame gives (peer-supplied text, so sanitised)."""
    try:
        body = frame.json()
    except ProtocolError:
        return "no reason given"
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason:
        return "no reason given"
    return "".join(ch if ch.isprintable() else "?" for ch in reason[:_ABORT_REASON_CHARS])
