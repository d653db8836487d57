"""The transport interface every protocol talks through, and the traffic counters it keeps.

Nodes are numbered ``0 .. n-1`` for the computing parties and ``n`` for the dealer.  A message is one numpy
array sent to one peer under an integer *tag*; a receiver asks for ``(src, tag)`` and gets exactly that
message, whatever order messages arrived in (the tag acts as a program counter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

#: dtypes that may cross the wire; anything else is refused by ``send`` and by the frame decoder.
WIRE_DTYPES: tuple[np.dtype, ...] = (
    np.dtype("<i8"),
    np.dtype("<u8"),
    np.dtype("<i4"),
    np.dtype("u1"),
    np.dtype("<f8"),
)


@dataclass
class TransportStats:
    """Traffic counters of one node, per peer.  Bytes count one frame header per message plus its payload (a large
    message's continuation frames add no header here, so 114 bytes per message is exact)."""

    bytes_sent: dict[int, int] = field(default_factory=dict)
    bytes_received: dict[int, int] = field(default_factory=dict)
    messages_sent: dict[int, int] = field(default_factory=dict)
    messages_received: dict[int, int] = field(default_factory=dict)
    #: Seconds spent blocked waiting for messages (or for room in a full send queue), and building or checking
    #: frames (copies included).
    wait_seconds: float = 0.0
    codec_seconds: float = 0.0

    def count_sent(self, peer: int, nbytes: int) -> None:
        self.bytes_sent[peer] = self.bytes_sent.get(peer, 0) + nbytes
        self.messages_sent[peer] = self.messages_sent.get(peer, 0) + 1

    def count_received(self, peer: int, nbytes: int) -> None:
        self.bytes_received[peer] = self.bytes_received.get(peer, 0) + nbytes
        self.messages_received[peer] = self.messages_received.get(peer, 0) + 1

    def reset(self) -> None:
        self.bytes_sent.clear()
        self.bytes_received.clear()
        self.messages_sent.clear()
        self.messages_received.clear()
        self.wait_seconds = 0.0
        self.codec_seconds = 0.0


@runtime_checkable
class Transport(Protocol):
    """What a protocol needs from a network: tagged point-to-point messages of numpy arrays."""

    @property
    def rank(self) -> int:
        """This node's id."""

    @property
    def peers(self) -> tuple[int, ...]:
        """Ids of the nodes this node may talk to."""

    @property
    def stats(self) -> TransportStats:
        """Traffic counters since creation or the last ``stats.reset()``."""

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        """Queue ``array`` (one of WIRE_DTYPES, any shape) for ``dst`` under ``tag``; returns without waiting."""

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        """Wait for the message ``src`` sent under ``tag``; ``op`` names the operation in error messages.

        Raises PeerLostError, PeerClosedError, ReceiveTimeout or ProtocolError; never waits past the deadline.
        The returned array may be read-only; a writable one belongs to the caller alone (nothing else refers to
        it), who may modify it.
        """

    def close(self, *, abort: bool = False, reason: str = "") -> None:
        """End the session: say goodbye (or abort, telling the peers ``reason``) to every peer, then release
        sockets.  Idempotent."""


def node_name(node: int, names: Mapping[int, str] | None) -> str:
    """How errors name a node: the given name, or ``node <id>``."""
    if names and node in names:
        return names[node]
    return f"node {node}"


def check_wire_array(array: np.ndarray, max_bytes: int) -> np.ndarray:
    """Return ``array`` as a C-contiguous little-endian wire array, or raise ValueError saying what is wrong."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"transports send numpy arrays, got {type(array).__name__}")
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"dtype {array.dtype} cannot be sent; allowed: {', '.join(str(d) for d in WIRE_DTYPES)}")
    if array.ndim > 8:
        raise ValueError(f"arrays of at most 8 dimensions can be sent, got {array.ndim}")
    if array.nbytes > max_bytes:
        raise ValueError(f"message of {array.nbytes} bytes exceeds the cap of {max_bytes} bytes")
    return np.asarray(array, dtype=dtype, order="C")
