"""A transport proxy that records what one party's transport carries, for tests of what parties see."""

from __future__ import annotations

from typing import Any

import numpy as np


class RecordingTransport:
    """Forwards everything to the transport it wraps and keeps a copy of every message: sent as
    (dst, tag, array), received as (src, tag, op, array), in the order they happened."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[tuple[int, int, np.ndarray]] = []
        self.received: list[tuple[int, int, str, np.ndarray]] = []

    @classmethod
    def around(cls, party: Any) -> RecordingTransport:
        """Wrap ``party``'s transport in a recorder, from now on; ``party.transport = recorder.inner`` undoes it."""
        recorder = cls(party.transport)
        party.transport = recorder
        return recorder

    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def peers(self) -> tuple[int, ...]:
        return self.inner.peers

    @property
    def stats(self) -> Any:
        return self.inner.stats

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        self.sent.append((dst, tag, np.array(array, copy=True)))
        self.inner.send(dst, tag, array)

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        array = self.inner.recv(src, tag, op=op)
        self.received.append((src, tag, op, np.array(array, copy=True)))
        return array

    def close(self, *, abort: bool = False, reason: str = "") -> None:
        self.inner.close(abort=abort, reason=reason)

    def take(self) -> tuple[list[tuple[int, int, np.ndarray]], list[tuple[int, int, str, np.ndarray]]]:
        """Everything recorded so far (sent, received), and start afresh."""
        recorded = (self.sent, self.received)
        self.sent, self.received = [], []
        return recorded

    def summed_openings(self, op: str) -> list[np.ndarray]:
        """The values opened under ``op`` by summing shares (broadcast openings: one tag carries one whole
        opening), in tag order: this party's own share (as it sent it to the peer it heard from first under
        that tag) plus every share it received under the tag, as uint64 words modulo 2^64."""
        own = {(dst, tag): array for dst, tag, array in self.sent}
        by_tag: dict[int, list[tuple[int, np.ndarray]]] = {}
        for src, tag, label, array in self.received:
            if label == op:
                by_tag.setdefault(tag, []).append((src, array))
        opened = []
        for tag in sorted(by_tag):
            messages = by_tag[tag]
            total = own[(messages[0][0], tag)].astype(np.int64).reshape(-1).view(np.uint64).copy()
            for _, array in messages:
                total += np.asarray(array, dtype=np.int64).reshape(-1).view(np.uint64)
            opened.append(total)
        return opened
