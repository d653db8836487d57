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


def settle_all(result: Any) -> Any:
    """Finish the deferred truncations (``smpc.deferred``) of an operation's result (a SharedTensor, or a tuple
    or list of them), so that a timed call includes them, as a user's next use of the value would."""
    if isinstance(result, smpc.SharedTensor):
        result.settle()
    elif isinstance(result, (tuple, list)):
        for item in result:
            settle_all(item)
    return result


def measure(session: smpc.Session, op: Callable[[], Any], repeats: int, warmup: int = 1) -> Measurement:
    """Run ``op`` ``warmup + repeats`` times, each after a barrier, its result settled (``settle_all``);
    traffic is that of the last run."""
    seconds = []
    for run in range(warmup + repeats):
        barrier(session)
        start = time.perf_counter()
        settle_all(op())
        synchronize(session)
        elapsed = time.perf_counter() - start
        if run >= warmup:
            seconds.append(elapsed)
    stats = session.stats
    return Measurement(seconds, stats.bytes_sent, stats.rounds, stats.messages, stats.dealer_bytes_received)


#: Widest line a table prints: a 160-column terminal shows it unwrapped.
TABLE_WIDTH = 160


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], *, keep: int = 0) -> None:
    """Print rows as a fixed-width table; ``columns`` are (key, heading, format).  A table wider than
    ``TABLE_WIDTH`` is printed as several, one under the other, each repeating the first ``keep`` columns."""
    print("\n".join(table_lines(rows, columns, keep=keep)))


def table_lines(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], *, keep: int = 0,
                width: int = TABLE_WIDTH) -> list[str]:
    """The lines ``print_table`` prints (see there); blocks of a split table are separated by an empty line."""
    cells = [[format(row[key], fmt) if row.get(key) is not None else "-" for key, _, fmt in columns] for row in rows]
    widths = [max(len(heading), *(len(c[i]) for c in cells)) for i, (_, heading, _) in enumerate(columns)]
    lines: list[str] = []
    for block in _column_blocks(widths, keep, width):
        if lines:
            lines.append("")
        lines.append("  ".join(columns[i][1].rjust(widths[i]) for i in block))
        lines.extend("  ".join(row[i].rjust(widths[i]) for i in block) for row in cells)
    return lines


def _column_blocks(widths: list[int], keep: int, width: int) -> list[list[int]]:
    """Column indices per printed block: the first ``keep`` in each, then as many others as fit ``width``
    (always at least one, so a single column wider than ``width`` still prints)."""
    kept = list(range(min(keep, len(widths))))
    blocks: list[list[int]] = []
    block = list(kept)
    for index in range(len(kept), len(widths)):
        if len(block) > len(kept) and sum(widths[i] + 2 for i in block) + widths[index] > width:
            blocks.append(block)
            block = list(kept)
        block.append(index)
    blocks.append(block)
    return blocks
