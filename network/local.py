"""An in-process transport for unit tests: every node is a thread of one process, messages are array copies.

It has the semantics of the real transport (tags, deadlines, goodbye and abort, per-peer counters) but no
encryption and no sockets.  The end-to-end tests and the CLI use ``ZmqTransport``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import numpy as np

from network.base import TransportStats, check_wire_array, node_name
from network.errors import (
    DuplicateTagError,
    NetworkError,
    PeerClosedError,
    PeerLostError,
    ReceiveTimeout,
    duplicate_tag,
)

#: Header bytes the real transport counts per message; counted here too so both transports report alike.
FRAME_OVERHEAD_BYTES = 114


class LocalNetwork:
    """A mailbox shared by ``n_nodes`` in-process nodes; ``transport(rank)`` gives each its endpoint."""

    def __init__(
        self,
        n_nodes: int,
        *,
        names: Mapping[int, str] | None = None,
        recv_timeout: float = 60.0,
        max_message_bytes: int = 1 << 30,
    ) -> None:
        if n_nodes < 2:
            raise ValueError(f"a network needs at least 2 nodes, got {n_nodes}")
        self.n_nodes = n_nodes
        self.names = dict(names or {})
        self.recv_timeout = recv_timeout
        self.max_message_bytes = max_message_bytes
        self._cond = threading.Condition()
        self._mail: dict[tuple[int, int, int], np.ndarray] = {}
        self._closed: set[int] = set()
        self._aborted: dict[int, str] = {}
        #: Per receiver, duplicates refused on arrival and not yet reported by one of its receives.
        self._refused: dict[int, list[DuplicateTagError]] = {}

    def transport(self, rank: int) -> LocalTransport:
        if not 0 <= rank < self.n_nodes:
            raise ValueError(f"rank {rank} outside 0..{self.n_nodes - 1}")
        return LocalTransport(self, rank)

    def abort(self, rank: int, reason: str = "aborted") -> None:
        """Mark ``rank`` as lost: every node waiting on it raises PeerLostError."""
        with self._cond:
            self._aborted.setdefault(rank, reason)
            self._cond.notify_all()

    def _put(self, src: int, dst: int, tag: int, array: np.ndarray) -> None:
        with self._cond:
            key = (src, dst, tag)
            if key in self._mail:
                # Refused on the receiving side, as ZmqTransport must (its sender cannot know): dst's next
                # receive raises, the first message stays.
                error = duplicate_tag(node_name(src, self.names), tag, node_name(dst, self.names))
                self._refused.setdefault(dst, []).append(error)
            else:
                self._mail[key] = array
            self._cond.notify_all()

    def _take(self, src: int, dst: int, tag: int, op: str) -> np.ndarray:
        deadline = time.monotonic() + self.recv_timeout
        what = f"{op} (tag {tag})" if op else f"tag {tag}"
        peer = node_name(src, self.names)
        with self._cond:
            while True:
                refused = self._refused.get(dst)
                if refused:
                    raise refused.pop(0)
                array = self._mail.pop((src, dst, tag), None)
                if array is not None:
                    return array
                if src in self._aborted:
                    raise PeerLostError(f"lost {peer} ({self._aborted[src]}) while waiting for {what}", peer=src)
                if src in self._closed:
                    raise PeerClosedError(f"{peer} closed the session while we waited for {what}", peer=src)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReceiveTimeout(
                        f"no message from {peer} for {what} within {self.recv_timeout:g} s", peer=src
                    )
                self._cond.wait(min(left, 0.5))

    def _close(self, rank: int, abort: bool, reason: str = "") -> None:
        with self._cond:
            if abort:
                self._aborted.setdefault(rank, reason or "aborted")
            self._closed.add(rank)
            self._cond.notify_all()


class LocalTransport:
    """One node's endpoint on a LocalNetwork; implements network.base.Transport."""

    def __init__(self, network: LocalNetwork, rank: int) -> None:
        self._network = network
        self._rank = rank
        self._stats = TransportStats()
        self._closed = False

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(i for i in range(self._network.n_nodes) if i != self._rank)

    @property
    def stats(self) -> TransportStats:
        return self._stats

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        if self._closed:
            raise NetworkError("send on a closed transport")
        if dst == self._rank or not 0 <= dst < self._network.n_nodes:
            raise ValueError(f"no peer {dst}")
        started = time.perf_counter()
        wire = check_wire_array(array, self._network.max_message_bytes)
        copy = np.array(wire, copy=True)
        copy.setflags(write=False)
        self._network._put(self._rank, dst, tag, copy)
        self._stats.count_sent(dst, FRAME_OVERHEAD_BYTES + copy.nbytes)
        self._stats.codec_seconds += time.perf_counter() - started

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        if self._closed:
            raise NetworkError("recv on a closed transport")
        started = time.perf_counter()
        array = self._network._take(src, self._rank, tag, op)
        self._stats.wait_seconds += time.perf_counter() - started
        self._stats.count_received(src, FRAME_OVERHEAD_BYTES + array.nbytes)
        return array

    def close(self, *, abort: bool = False, reason: str = "") -> None:
        if not self._closed:
            self._closed = True
            self._network._close(self._rank, abort, reason)
