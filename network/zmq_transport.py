"""ZmqTransport: the real network, ZeroMQ over TCP, every link encrypted and authenticated with CurveZMQ.

Each node binds one ROUTER (a CURVE server whose ZAP handler admits only roster keys, and which admits nobody if
that handler stops answering) and opens one DEALER per peer (a CURVE client pinned to that peer's roster key).  A
node sends on its DEALERs and receives on its ROUTER; the sender of a frame is the User-Id our ZAP handler gave the
authenticated connection, never a routing id.

Set-up is two-phase so that local runs can use random ports: construct (binds, ``endpoint`` tells the port), then
``connect(addresses)`` (HELLO exchange, fails with HandshakeError).  Liveness comes from ZeroMQ heartbeats on
every connection and a socket monitor per DEALER: a peer that dies or freezes shows up as a disconnect within about
``heartbeat_interval + heartbeat_timeout`` seconds, and every waiting ``recv`` raises PeerLostError naming it.

Memory a peer can make us hold is bounded: every message is ``[header, payload of at most CHUNK_BYTES]`` (larger
arrays continue in MORE frames, ``network.framing``); libzmq queues at most ``HWM_FRAMES`` (1024) such messages per
peer, 1024 x (1 MiB + 114 bytes) = 1 GiB, plus the one it is decoding (MAXMSGSIZE, 1 MiB + 4 KiB); our mailbox holds
at most ``max_buffered_bytes`` per peer (default 2 x ``max_message_bytes`` + 1 MiB, so 2 GiB + 1 MiB), counting
messages not taken yet and incomplete ones.  A message with any other number of parts, a first frame declaring more
than ``max_message_bytes``, a continuation out of place, and a peer past its budget are ProtocolErrors naming the
peer.  What remains: libzmq delivers a multipart message only once it has buffered all of its parts, and no libzmq
option caps their number or total size, so a peer holding a roster key can still send one enormous multipart message
that libzmq buffers in full before we see it.  Our own peers never do, and we refuse it the moment it is delivered.

A send may wait for room in a peer's queue, but never without reading: each frame is queued with NOBLOCK, and while
the queue is full we keep moving our own incoming frames into the mailbox, so two nodes sending each other large
messages before receiving both finish.  The price of short queues: a node that does not call into its transport
for longer than ``heartbeat_timeout`` while a peer has more than 1024 frames on their way to it loses that link
(libzmq stops reading a connection whose queue is full, and its heartbeats starve); ``send`` and ``recv`` both read.

A transport belongs to one thread (ZeroMQ sockets are not thread-safe); its ZAP handler runs in a thread of its own.
This module is the event loop and the receive checks; ``zmq_setup`` makes the sockets and checks the HELLOs,
``delivery`` sends frames and assembles them into the mailbox, ``zmq_liveness`` follows the peers and releases
everything.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import zmq

from . import zmq_liveness as liveness
from . import zmq_setup as setup
from .base import TransportStats, check_wire_array, node_name
from .delivery import MESSAGE_CHARGE_BYTES, Mailbox, receive_parts, send_message
from .errors import HandshakeError, NetworkError, PeerClosedError, PeerLostError, ProtocolError, ReceiveTimeout
from .framing import HEADER_SIZE, Frame, Header, Kind, decode_header, whole_frame
from .zap import ZapHandler

#: How often a node that is sending or waiting also drains its whole ROUTER and reads its monitors.  Between two
#: such pumps a round costs one blocking receive on the ROUTER; a lost peer shows at most about this much later.
SERVICE_INTERVAL_S = 0.05
_SERVICE_INTERVAL_MS = round(SERVICE_INTERVAL_S * 1000)
_RCVTIMEO = int(zmq.RCVTIMEO)


class ZmqTransport:
    """One node's end of a CurveZMQ-encrypted session; implements ``network.base.Transport``.

    ``public_key``/``secret_key`` are this node's Z85 keys, ``roster_keys`` maps every node id (self included) to
    its Z85 public key, ``handshake`` holds the session parameters every peer must agree on exactly (compared in
    the HELLO), ``names`` is how errors name nodes.  Binding happens here; ``endpoint`` is the address bound.

    ``max_message_bytes`` caps one array (sent or received); ``max_buffered_bytes`` caps, per peer, what its
    messages hold here until taken, incomplete ones included, each charged ``MESSAGE_CHARGE_BYTES`` (1 KiB) on top
    of its payload (default: 2 x ``max_message_bytes`` + 1 MiB; at least one message at the cap must fit).
    ``recv_timeout`` bounds a receive and the wait for queue space for each frame sent.
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
        max_buffered_bytes: int | None = None,
    ) -> None:
        self._rank = rank
        self._keys = setup.check_keys(rank, public_key, secret_key, roster_keys)
        self._session_id = setup.check_session_id(session_id)
        self._handshake = setup.normalise_handshake(handshake)
        self._names = dict(names) if names else {}
        max_message = int(setup.positive(max_message_bytes, "max_message_bytes"))
        self._options = setup.Options(
            recv_timeout=setup.positive(recv_timeout, "recv_timeout"),
            connect_timeout=setup.positive(connect_timeout, "connect_timeout"),
            close_timeout=max(0.0, float(close_timeout)),
            heartbeat_ivl_ms=setup.millis(heartbeat_interval, "heartbeat_interval"),
            heartbeat_timeout_ms=setup.millis(heartbeat_timeout, "heartbeat_timeout"),
            max_message_bytes=max_message,
            max_buffered_bytes=setup.buffer_budget(max_buffered_bytes, max_message, MESSAGE_CHARGE_BYTES),
        )
        self._stats = TransportStats()
        self._links: dict[int, setup.Link] = {}
        self._mailbox = Mailbox(receiver=self._name(rank), budget=self._options.max_buffered_bytes)
        self._closed = False
        self._context = zmq.Context()
        zap = None
        try:
            zap = self._zap = ZapHandler(self._context, self._keys.roster, domain=setup.ZAP_DOMAIN)
            self._router = setup.bind_router(self._context, bind, self._keys, self._options, self._name(rank))
        except BaseException:
            if zap is not None:
                zap.close()  # its thread owns its socket: stopped before the context goes, as in release()
            self._context.destroy(linger=0)
            raise
        self._endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._next_service = 0.0  # monotonic time of the next full pump (ROUTER drained, monitors read)
        self._receive_timeout_ms = -1  # the ROUTER's RCVTIMEO as last set (-1: ZeroMQ's default, no timeout)

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
        """DATA traffic per peer: one header plus the payload per message, whatever the number of frames it took
        (so the 114-byte header per message of every protocol's cost model holds); HELLO, BYE, ABORT not counted."""
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
        peers = setup.check_addresses(self._rank, addresses, self._keys, self._name)
        try:
            for node, endpoint in peers.items():
                link = setup.open_link(self._context, node, self._name(node), endpoint, self._keys, self._options)
                self._links[node] = link
                self._poller.register(link.monitor, zmq.POLLIN)
            hello = setup.hello_payload(self._rank, self._session_id, self._handshake)
            for link in self._links.values():
                self._send(link, Kind.HELLO, 0, hello, self._options.recv_timeout)
            self._await_hellos(time.monotonic() + self._options.connect_timeout)
        except NetworkError as error:
            self._shutdown(abort=True, reason=str(error))
            if isinstance(error, HandshakeError):
                raise
            raise HandshakeError(str(error)) from error
        except BaseException:
            self._shutdown(abort=True, reason="set-up interrupted")
            raise

    def _await_hellos(self, deadline: float) -> None:
        """Pump until every peer is ready, raising HandshakeError on a refusal, an abort, a loss or the deadline."""
        while True:
            setup.raise_link_failure(self._links)
            waiting = [link for link in self._links.values() if not setup.ready(link)]
            if not waiting:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HandshakeError(setup.set_up_timeout_message(
                    waiting, self._options.connect_timeout, self._zap.denied, self._zap.last_denied_key
                ))
            self._pump(remaining)

    # ----------------------------------------------------------------------------------------------- traffic

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        """Queue ``array`` for ``dst`` under ``tag`` and return; the array is copied, so it may be reused at once.

        Raises PeerLostError / PeerClosedError if ``dst`` is (or, while we wait for queue space, turns out to be)
        gone, NetworkError if the queue stayed full for ``recv_timeout`` seconds, ProtocolError on a bad frame that
        arrived meanwhile, ValueError / TypeError for an array that cannot be sent.
        """
        link = self._link(dst)
        self._check_sendable(link, tag)
        started = time.perf_counter()
        # A node that mostly sends must still drain its queues, or libzmq stops reading the full ones and their
        # heartbeats starve (see zmq_setup.HWM_FRAMES): every SERVICE_INTERVAL_S, not on every send (a poll of the
        # ROUTER is two system calls, a large part of a small round).
        if time.monotonic() >= self._next_service:
            self._pump(0.0)
        # reshape: check_wire_array's np.ascontiguousarray turns a 0-d array into shape (1,)
        wire = check_wire_array(array, self._options.max_message_bytes).reshape(np.shape(array))
        self._send(link, Kind.DATA, tag, wire, self._options.recv_timeout)
        self._stats.count_sent(dst, HEADER_SIZE + wire.nbytes)
        self._stats.codec_seconds += time.perf_counter() - started

    def _check_sendable(self, link: setup.Link, tag: int) -> None:
        """PeerLostError / PeerClosedError if ``link``'s peer is gone."""
        if link.lost or link.aborted:
            raise PeerLostError(f"cannot send tag {tag} to {link.name}: it is lost", peer=link.node)
        if link.bye:
            raise PeerClosedError(f"cannot send tag {tag} to {link.name}: it closed the session", peer=link.node)

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        """Wait for the message ``src`` sent under ``tag`` (others arriving meanwhile are kept for later).

        Raises PeerLostError if any peer was lost or aborted, PeerClosedError if ``src`` said goodbye without
        sending it, ReceiveTimeout after ``recv_timeout`` seconds, ProtocolError on a bad frame.  The array
        returned may be read-only (a view of a large frame); nothing else refers to it.
        """
        self._link(src)
        deadline = time.monotonic() + self._options.recv_timeout

        def awaited() -> str:
            return f"{op} (tag {tag})" if op else f"tag {tag}"

        while True:
            array = self._mailbox.take(src, tag)
            if array is not None:
                return array
            liveness.raise_if_failed(self._links, src, lambda: f"{awaited()} from {self._name(src)}")
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise ReceiveTimeout(
                    f"no message from {self._name(src)} for {awaited()} within {self._options.recv_timeout:g} s",
                    peer=src,
                )
            if now >= self._next_service:
                self._pump(remaining)
            else:
                self._await_router(remaining)

    def _link(self, node: int) -> setup.Link:
        """The link to ``node``; NetworkError if the transport is closed or not connected, ValueError if unknown."""
        if self._closed:
            raise NetworkError("transport is closed")
        link = self._links.get(node)
        if link is None:
            if not self._links:
                raise NetworkError("transport is not connected; call connect() first")
            raise ValueError(f"{self._name(node)} is not a peer of {self._name(self._rank)}")
        return link

    def _send(self, link: setup.Link, kind: Kind, tag: int, wire: np.ndarray, timeout: float) -> None:
        """Send ``wire`` on ``link`` as one message of one or more frames (see ``delivery.send_message``)."""

        def wait(link: setup.Link, remaining: float) -> None:
            # The peer may itself be blocked sending to us: take its frames, or neither of us ever moves.
            self._pump(remaining, writable=link.socket)
            self._check_sendable(link, tag)

        send_message(link, kind, tag, wire, session_id=self._session_id, sender=self._rank, timeout=timeout, wait=wait)

    # -------------------------------------------------------------------------------------------------- events

    def _pump(self, timeout_s: float, *, writable: zmq.Socket | None = None) -> None:
        """Wait up to ``timeout_s`` for traffic or link events (or for room to send on ``writable``), then process
        everything that is ready."""
        started = time.perf_counter()
        self._next_service = time.monotonic() + SERVICE_INTERVAL_S
        if writable is not None:
            self._poller.register(writable, zmq.POLLOUT)
        try:
            ready = dict(self._poller.poll(setup.seconds_to_ms(min(timeout_s, 3600.0))))
        finally:
            if writable is not None:
                self._poller.unregister(writable)
        self._stats.wait_seconds += time.perf_counter() - started
        if self._router in ready:
            started = time.perf_counter()
            self._drain_router()
            self._stats.codec_seconds += time.perf_counter() - started
        for link in list(self._links.values()):
            if link.monitor in ready:
                liveness.drain_monitor(link, self._confirm_loss, self._explain_failure)

    def _await_router(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` (at most ``SERVICE_INTERVAL_S``) for a message on the ROUTER alone and accept
        it (one; ``recv`` loops).

        The hot path of a round: one blocking receive on one socket.  The monitors and the rest of the queue wait
        for the next ``_pump``, at most about ``SERVICE_INTERVAL_S`` away, so a lost peer shows that much later."""
        started = time.perf_counter()
        # A receive that blocks (RCVTIMEO) costs one system call where zmq_poll costs three or four.  It waits
        # SERVICE_INTERVAL_S at most (set once), less only when the deadline is nearer.
        timeout_ms = min(_SERVICE_INTERVAL_MS, setup.seconds_to_ms(timeout_s))
        if timeout_ms != self._receive_timeout_ms:
            self._router.setsockopt(_RCVTIMEO, timeout_ms)
            self._receive_timeout_ms = timeout_ms
        try:
            parts = receive_parts(self._router)
        except zmq.Again:
            self._stats.wait_seconds += time.perf_counter() - started
            return
        accepted = time.perf_counter()
        self._stats.wait_seconds += accepted - started
        self._accept(parts)
        self._stats.codec_seconds += time.perf_counter() - accepted

    def _drain_router(self) -> None:
        """Accept every message waiting on the ROUTER."""
        while self._router.poll(0, zmq.POLLIN):
            self._accept(receive_parts(self._router))

    def _explain_failure(self) -> None:
        """After a failed handshake, let an ABORT on its way arrive (see ``zmq_liveness.await_abort``)."""
        liveness.await_abort(self._links.values(), self._router, self._drain_router)

    def _confirm_loss(self, link: setup.Link) -> None:
        """Mark ``link`` lost unless its goodbye shows up within the grace period (see ``zmq_liveness``)."""
        liveness.confirm_loss(link, self._router, self._drain_router)

    def _accept(self, parts: list[zmq.Frame]) -> None:
        """Validate one incoming message and apply it: assemble DATA and MORE, record HELLO, BYE and ABORT.

        A frame that is not a well-formed next frame of its sender's stream changes nothing (a forger's garbage
        does not disturb the real peer's sequence); a well-formed one takes its sequence number even if what it
        carries is then refused (a duplicate tag, a peer over its budget, a HELLO that does not match).
        """
        link = self._sender_link(parts[-1])  # every part carries the connection's User-Id; a ROUTER gives >= 2
        if len(parts) != 3:
            raise ProtocolError(
                f"bad frame from {link.name}: message with {len(parts) - 1} part(s); every message is a header and "
                "one payload part"
            )
        try:
            head = decode_header(parts[1], session_id=self._session_id if link.hello else None,
                                 max_bytes=self._options.max_message_bytes)
            frame = None if head.kind in (Kind.DATA, Kind.MORE) else whole_frame(head, parts[2])
        except ProtocolError as error:
            raise ProtocolError(f"bad frame from {link.name}: {error}") from error
        self._check_sequence(link, head)
        if frame is None:
            body = self._mailbox.check(link.node, link.name, head, parts[2])
            link.recv_seq += 1
            array = self._mailbox.store(link.node, link.name, head, body)
            if array is not None:
                self._stats.count_received(link.node, HEADER_SIZE + array.nbytes)
            return
        link.recv_seq += 1
        self._apply(link, frame)

    def _sender_link(self, header: zmq.Frame) -> setup.Link:
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

    def _check_sequence(self, link: setup.Link, frame: Header) -> None:
        """The header's sender must be the authenticated one, and frames must arrive exactly in sequence."""
        if frame.sender != link.node:
            raise ProtocolError(
                f"frame over {link.name}'s authenticated link claims to come from {self._name(frame.sender)}"
            )
        if frame.seq != link.recv_seq:
            raise ProtocolError(
                f"replayed or out-of-sequence frame from {link.name} (sequence {frame.seq}, expected {link.recv_seq})"
            )
        # An ABORT may come first: a node that could not start (see network.zmq_notice) says so instead.
        if (frame.kind == Kind.HELLO) != (link.recv_seq == 0) and not (frame.kind == Kind.ABORT and frame.seq == 0):
            raise ProtocolError(f"{link.name} sent {frame.kind.name} as frame {frame.seq}; HELLO comes first, once")

    def _apply(self, link: setup.Link, frame: Frame) -> None:
        """Act on a HELLO, BYE or ABORT that passed every check."""
        if frame.kind == Kind.HELLO:
            setup.check_hello(link, frame, self._session_id, self._handshake)
            link.hello = True
        elif not link.hello and frame.session_id != self._session_id:
            raise HandshakeError(f"{link.name} could not start session {frame.session_id.hex()}; we are in session "
                                 f"{self._session_id.hex()}")
        else:
            liveness.apply_goodbye(link, frame)

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
            liveness.release(self._links.values(), self._router, self._zap, self._context)
            self._mailbox.clear()

    def _say_goodbye(self, abort: bool, reason: str) -> None:
        """Queue a BYE or ABORT for every peer not already gone; a failure to queue is not an error here."""
        kind, body = liveness.goodbye(abort, reason)
        for link in self._links.values():
            if link.lost or link.aborted:
                continue
            try:
                self._send(link, kind, 0, body, 0.0)  # one try: a full queue must not hold up a close
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

    def _name(self, node: int) -> str:
        """How errors name ``node``."""
        return node_name(node, self._names)
