"""What every benchmark shares: a start barrier, repeated timing, median and spread, and table printing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import smpc


def synchronize(session: smpc.Session) -> None:
    """Wait for the kernels queued on this party's GPU, so a timed op's clock stops when its work is done
    (CUDA runs asynchronously); nothing on the CPU."""
    if session.device.type == "cuda":
        torch.cuda.synchronize(session.device)


def barrier(session: smpc.Session) -> None:
    """Line the parties up (one tiny opening, excluded from the counters) so a timed op starts together."""
    session.party.open(torch.zeros(1, dtype=torch.int64, device=session.device), "barrier")
    session.stats.reset()


@dataclass
class Measurement:
    """Timings of one op on one party, with the traffic of one run of it."""

    seconds: list[float]
    bytes_sent: int
    rounds: int
    messages: int
    dealer_bytes_received: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def iqr(self) -> float:
        if len(self.seconds) < 4:
            return max(self.seconds) - min(self.seconds)
        quartiles = statistics.quantiles(self.seconds, n=4)
        return quartiles[2] - quartiles[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "iqr_s": self.iqr,
            "runs": len(self.seconds),
            "bytes_sent": self.bytes_sent,
            "rounds": self.rounds,
            "messages": self.messages,
            "dealer_bytes_received": self.dealer_bytes_received,
        }


def measure(session: smpc.Session, op: Callable[[], Any], repeats: int, warmup: int = 1) -> Measurement:
    """Run ``op`` ``warmup + repeats`` times, each after a barrier; traffic is that of the last run."""
    seconds = []
    for run in range(warmup + repeats):
        barrier(session)
        start = time.perf_counter()
        op()
        synchronize(session)
        elapsed = time.perf_counter() - start
        if run >= warmup:
            seconds.append(elapsed)
    stats = session.stats
    return Measurement(seconds, stats.bytes_sent, stats.rounds, stats.messages, stats.dealer_bytes_received)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as a fixed-width table; ``columns`` are (key, heading, format)."""
    cells = [[format(row[key], fmt) if row.get(key) is not None else "-" for key, _, fmt in columns] for row in rows]
    widths = [max(len(heading), *(len(c[i]) for c in cells)) for i, (_, heading, _) in enumerate(columns)]
    print("  ".join(heading.rjust(w) for (_, heading, _), w in zip(columns, widths)))
    for row in cells:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
