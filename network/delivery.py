"""Delivery for ZmqTransport: frames out onto a DEALER, DATA frames in to the mailbox where ``recv`` finds them.

The mailbox holds, per ``(source, tag)``, the message that arrived and was not taken yet; a second one under the
same tag is refused (``network.errors.duplicate_tag``).  Sending copies the payload once into ZeroMQ.
"""

from __future__ import annotations

import numpy as np
import zmq

from .errors import NetworkError, duplicate_tag
from .framing import Kind, encode_header, payload_chunks
from .zmq_setup import Link


class Mailbox:
    """Messages received and not yet taken, one per ``(source, tag)``."""

    def __init__(self) -> None:
        self._messages: dict[tuple[int, int], np.ndarray] = {}

    def put(self, src: int, tag: int, array: np.ndarray, *, sender: str, receiver: str) -> None:
        """Keep ``array`` for ``take(src, tag)``; DuplicateTagError (naming ``sender``, ``receiver``) if one waits."""
        if (src, tag) in self._messages:
            raise duplicate_tag(sender, tag, receiver)
        self._messages[(src, tag)] = array

    def take(self, src: int, tag: int) -> np.ndarray | None:
        """Pop the message ``src`` sent under ``tag``, if it arrived."""
        return self._messages.pop((src, tag), None)

    def clear(self) -> None:
        """Drop everything (the transport is closing)."""
        self._messages.clear()


def send_frame(link: Link, kind: Kind, tag: int, wire: np.ndarray, *, session_id: bytes, sender: int,
               timeout: float) -> None:
    """Send one frame on ``link``; the payload is copied, so the caller may modify ``wire`` right after.

    NetworkError if the DEALER's queue stayed full for ``timeout`` seconds (its SNDTIMEO).
    """
    header = encode_header(kind, session_id=session_id, sender=sender, seq=link.send_seq, tag=tag, array=wire)
    try:
        # copy=True on purpose: libzmq encrypts later, in its own thread, so a zero-copy send would read the
        # caller's array after we return (and pyzmq's zero-copy callbacks crash an interpreter that exits
        # with frames in flight).  CURVE copies into a new buffer anyway; one more memcpy costs little.
        link.socket.send_multipart([header, *payload_chunks(wire)], copy=True)
    except zmq.Again as error:
        raise NetworkError(f"could not queue a {kind.name} frame for {link.name} within {timeout:g} s") from error
    link.send_seq += 1
