"""Delivery for ZmqTransport: messages out as frames onto a DEALER, frames in assembled into the mailbox.

Out: an array becomes a DATA frame and, past ``CHUNK_BYTES``, MORE frames (``network.framing``), each queued with
``zmq.NOBLOCK``; when the queue is full the caller's ``wait`` moves our own incoming frames into the mailbox until
there is room, so two nodes that send each other large messages before receiving never deadlock.

In: the ``Mailbox`` checks each DATA or MORE frame against the message its sender is in the middle of sending,
allocates a large message's array once (when its DATA frame passes the checks) and fills it chunk by chunk, and
keeps every complete message until ``recv`` takes it.  What one peer holds here, waiting or incomplete, is capped
by a budget: each message costs its declared length plus ``MESSAGE_CHARGE_BYTES`` of bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from .errors import NetworkError, ProtocolError, duplicate_tag
from .framing import CHUNK_BYTES, Header, Kind, array_view, byte_view, encode_header, payload_chunks
from .zmq_setup import Link

#: What a message waiting here costs beyond its payload: the numpy array and dict entry that hold it and the
#: allocator's rounding (about 300 bytes measured for small messages), rounded up.  Charged so that a flood of
#: empty messages is bounded too.
MESSAGE_CHARGE_BYTES = 1024
#: A complete message smaller than this is copied out of its ZeroMQ frame; larger ones stay zero-copy views.
_COPY_BELOW_BYTES = 64 << 10
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


@dataclass
class _Assembly:
    """A message whose DATA frame arrived and whose MORE frames are still coming."""

    tag: int
    dtype: np.dtype
    shape: tuple[int, ...]
    buffer: np.ndarray  # uint8, the whole declared length, allocated once
    filled: int


class Mailbox:
    """Messages received and not yet taken (one per ``(source, tag)``), the one each peer is in the middle of
    sending, and the bytes each peer holds here, capped at ``budget``.

    ``receiver`` is how errors name this node.  A DATA or MORE frame goes through ``check`` (is it a well-formed
    next frame of its sender's stream?) and then ``store`` (may the sender hold that much more here?).
    """

    def __init__(self, *, receiver: str, budget: int) -> None:
        self._receiver = receiver
        self._budget = budget
        self._messages: dict[tuple[int, int], np.ndarray] = {}
        self._assembling: dict[int, _Assembly] = {}
        self._held: dict[int, int] = {}

    def held(self, src: int) -> int:
        """Bytes ``src``'s messages hold here (waiting or incomplete, charge included)."""
        return self._held.get(src, 0)

    def check(self, src: int, sender: str, head: Header, payload: Any) -> memoryview:
        """The payload of a DATA or MORE frame from ``src`` (``sender`` names it), as bytes, if the frame may come
        next in its stream; ProtocolError otherwise, leaving everything as it was.  Costs nothing."""
        body = byte_view(payload, "payload")
        if body.nbytes > CHUNK_BYTES:
            raise ProtocolError(f"bad frame from {sender}: payload part of {body.nbytes} bytes, at most {CHUNK_BYTES}")
        current = self._assembling.get(src)
        if head.kind == Kind.DATA:
            if current is not None:
                raise ProtocolError(
                    f"bad frame from {sender}: tag {head.tag} starts while tag {current.tag} is incomplete "
                    f"({current.filled} of {current.buffer.nbytes} bytes)"
                )
            if body.nbytes > head.length:
                raise ProtocolError(
                    f"bad frame from {sender}: declared {head.length} bytes but payload has {body.nbytes}"
                )
            return body
        if current is None:
            raise ProtocolError(f"bad frame from {sender}: continuation of tag {head.tag} without a first frame")
        if head.tag != current.tag:
            raise ProtocolError(
                f"bad frame from {sender}: continuation of tag {head.tag} while tag {current.tag} is incomplete"
            )
        if body.nbytes == 0:
            raise ProtocolError(f"bad frame from {sender}: empty continuation of tag {head.tag}")
        if current.filled + body.nbytes > current.buffer.nbytes:
            raise ProtocolError(
                f"bad frame from {sender}: continuation of tag {head.tag} overruns it "
                f"({current.filled} + {body.nbytes} bytes of {current.buffer.nbytes})"
            )
        return body

    def store(self, src: int, sender: str, head: Header, body: memoryview) -> np.ndarray | None:
        """Apply a frame that passed ``check``; return the message it completes (kept for ``take``), if any.

        A DATA frame is refused (DuplicateTagError) if a message under its tag waits already, and (ProtocolError)
        if its whole declared length would take ``src`` past the budget; only then is a large message's array
        allocated (once; its pages are touched as the chunks arrive).
        """
        if head.kind == Kind.MORE:
            current = self._assembling[src]
            current.buffer[current.filled : current.filled + body.nbytes] = np.frombuffer(body, dtype=np.uint8)
            current.filled += body.nbytes
            if current.filled < current.buffer.nbytes:
                return None
            del self._assembling[src]
            return self._keep(src, current.tag, array_view(current.buffer, current.dtype, current.shape))
        if (src, head.tag) in self._messages:
            raise duplicate_tag(sender, head.tag, self._receiver)
        held = self.held(src) + head.length + MESSAGE_CHARGE_BYTES
        if held > self._budget:
            raise ProtocolError(
                f"{sender} would have {held} bytes waiting here with tag {head.tag}, more than "
                f"max_buffered_bytes={self._budget} (messages not taken yet and incomplete ones count, "
                f"{MESSAGE_CHARGE_BYTES} bytes each on top of their payload)"
            )
        if body.nbytes == head.length:
            array = array_view(body, head.dtype, head.shape)
            if body.nbytes < _COPY_BELOW_BYTES:
                # A view would keep the ZeroMQ frame and its wrappers alive, over 1 KiB for a few bytes of payload.
                array = array.copy()
            self._held[src] = held
            return self._keep(src, head.tag, array)
        try:
            buffer = np.empty(head.length, dtype=np.uint8)
        except MemoryError as error:  # a budget larger than this machine can give: still the peer's message we refuse
            raise ProtocolError(f"{sender}'s message under tag {head.tag} declares {head.length} bytes, more than we "
                                "can allocate") from error
        buffer[: body.nbytes] = np.frombuffer(body, dtype=np.uint8)
        self._held[src] = held
        self._assembling[src] = _Assembly(head.tag, head.dtype, head.shape, buffer, body.nbytes)
        return None

    def _keep(self, src: int, tag: int, array: np.ndarray) -> np.ndarray:
        """File a complete message for ``take``."""
        self._messages[(src, tag)] = array
        return array

    def take(self, src: int, tag: int) -> np.ndarray | None:
        """Pop the message ``src`` sent under ``tag``, if it arrived whole; frees its share of ``src``'s budget."""
        array = self._messages.pop((src, tag), None)
        if array is not None:
            self._held[src] -= array.nbytes + MESSAGE_CHARGE_BYTES
        return array

    def clear(self) -> None:
        """Drop everything (the transport is closing)."""
        self._messages.clear()
        self._assembling.clear()
        self._held.clear()


def send_message(link: Link, kind: Kind, tag: int, wire: np.ndarray, *, session_id: bytes, sender: int,
                 timeout: float, wait: Callable[[Link, float], None]) -> None:
    """Send ``wire`` on ``link`` as one frame, or a DATA frame and MORE frames if it is larger than CHUNK_BYTES.

    The payload is copied, so the caller may modify ``wire`` right after.  Each frame is queued without blocking;
    while the queue is full, ``wait(link, seconds_left)`` runs (it must make progress possible: read our own
    incoming frames, notice a lost peer).  NetworkError if a frame could not be queued within ``timeout`` seconds
    (0: one try, no wait); a message cut short that way leaves the peer's mailbox with an incomplete message.
    """
    chunks = payload_chunks(wire)
    header = encode_header(kind, session_id=session_id, sender=sender, seq=link.send_seq, tag=tag, array=wire)
    _queue(link, [header, chunks[0]], kind, timeout, wait)
    for chunk in chunks[1:]:
        part = np.frombuffer(chunk, dtype=np.uint8)
        header = encode_header(Kind.MORE, session_id=session_id, sender=sender, seq=link.send_seq, tag=tag, array=part)
        _queue(link, [header, chunk], Kind.MORE, timeout, wait)


def receive_parts(socket: zmq.Socket) -> list[zmq.Frame]:
    """Every part of the next message on ``socket``, as frames (``recv_multipart(copy=False)`` without its
    per-part option lookups); zmq.Again if none arrives within the socket's RCVTIMEO."""
    parts = [socket.recv(0, copy=False)]
    while parts[-1].more:
        parts.append(socket.recv(0, copy=False))
    return parts


def _queue(link: Link, parts: list[Any], kind: Kind, timeout: float, wait: Callable[[Link, float], None]) -> None:
    """Queue one two-part message on ``link``'s DEALER, waiting (see ``send_message``) while its queue is full."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # copy=True on purpose: libzmq encrypts later, in its own thread, so a zero-copy send would read the
            # caller's array after we return (and pyzmq's zero-copy callbacks crash an interpreter that exits
            # with frames in flight).  CURVE copies into a new buffer anyway; one more memcpy costs little.
            # libzmq checks the queue limit on a message's first part only, so both parts go or neither does.
            # Two sends with plain int flags: pyzmq's send_multipart and its enum flags cost more than the sends.
            link.socket.send(parts[0], _MORE_NOBLOCK, copy=True)
            link.socket.send(parts[1], _NOBLOCK, copy=True)
        except zmq.Again:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NetworkError(
                    f"could not queue a {kind.name} frame for {link.name} within {timeout:g} s: it is not reading"
                ) from None
            wait(link, remaining)
            continue
        link.send_seq += 1
        return
