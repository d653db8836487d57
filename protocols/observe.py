"""Watching what a party does: one ``Observer`` interface for the audit log, the benchmark's cost model, the
offline phase's recorder and the profiler.

A party holds a list of observers (``Party.observers``; empty unless someone watches).  Every method of
``Observer`` is a no-op; a subclass overrides what it watches.  Nothing here is global: each party has its own
list, so one process can watch one session and not another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

#: Categories a Party times itself; "waiting" and frame building come from the transport's counters.
TIMED = ("prg", "serialization")


class Observer:
    """Hooks a party calls as it works; override the ones you need."""

    def opening(self, op: str, nbytes: int) -> None:
        """About to open (or share, or reveal to one) a share of ``nbytes`` bytes for operation ``op``."""

    def learned(self, op: str, tag: int, value: torch.Tensor) -> None:
        """This party learned ``value`` (an opening or a reveal) under program tag ``tag``."""

    def dealer_request(self, request: Any) -> None:
        """This party asked the dealer for ``request`` (a ``protocols.additive.dealer.Request``)."""

    def timed(self, category: str, seconds: float) -> None:
        """This party spent ``seconds`` in ``category`` (one of ``TIMED``)."""


@dataclass
class Profile(Observer):
    """Seconds per timed category since creation or ``reset()`` (the benchmark's ``--profile``)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, category: str, seconds: float) -> None:
        self.seconds[category] = self.seconds.get(category, 0.0) + seconds

    def reset(self) -> None:
        self.seconds.clear()


@dataclass
class OpeningTrace(Observer):
    """Every opening as (operation, bytes of this party's share), in order, and every dealer request as
    ("dealer request", its bytes) (the benchmark's cost model)."""

    openings: list[tuple[str, int]] = field(default_factory=list)

    def opening(self, op: str, nbytes: int) -> None:
        self.openings.append((op, nbytes))

    def dealer_request(self, request: Any) -> None:
        self.openings.append(("dealer request", int(request.encode().nbytes)))


@dataclass
class RequestRecorder(Observer):
    """Every dealer request, in order (to plan a repeating step ahead of time)."""

    requests: list = field(default_factory=list)

    def dealer_request(self, request: Any) -> None:
        self.requests.append(request)
