"""Where a party's time goes: accumulated seconds per category, kept per party (no global state).

A ``Party`` with a ``Profile`` times its PRG expansions and the copies between tensors and wire arrays; its
transport's counters add the time blocked on peers and spent building and checking frames.  Profiling costs
two clock reads per timed step; it is off unless a caller sets ``Party.profile``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: Categories a Profile accumulates itself; "waiting" and frame building come from the transport's counters.
CATEGORIES = ("prg", "serialization")


class _Timer:
    __slots__ = ("_profile", "_name", "_start")

    def __init__(self, profile: "Profile", name: str) -> None:
        self._profile, self._name, self._start = profile, name, time.perf_counter()

    def stop(self) -> None:
        self._profile.seconds[self._name] = self._profile.seconds.get(self._name, 0.0) + (
            time.perf_counter() - self._start)

    def __enter__(self) -> "_Timer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Profile:
    """Seconds per category since creation or ``reset()``."""

    seconds: dict[str, float] = field(default_factory=dict)

    def timer(self, name: str) -> _Timer:
        """Start timing ``name``; call ``.stop()`` (or use as a context manager) to add the elapsed time."""
        return _Timer(self, name)

    def reset(self) -> None:
        self.seconds.clear()
