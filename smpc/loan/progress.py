"""Progress lines of a training run (party 0 prints them)."""

from __future__ import annotations

import sys
import time

from smpc.loan.config import TrainConfig


def progress_line(epoch: int, config: TrainConfig, done: int, total: int, start_step: int, start: float,
                   shown: str) -> str:
    elapsed = time.monotonic() - start
    left = elapsed / max(done - start_step, 1) * (total - done)
    return (f"epoch {epoch + 1}/{config.epochs}  batch {done}/{total}  {shown}  {elapsed:.0f} s elapsed, "
            f"about {left:.0f} s left")


def print_progress(line: str) -> None:
    """Where progress goes: standard error, flushed."""
    print(line, file=sys.stderr, flush=True)
