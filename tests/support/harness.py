"""Run one program on n parties, in-process (threads) or as processes over ZeroMQ, for tests.

Programs that run as processes must be module-level functions (they are imported by name in each party);
``functools.partial`` of such a function with picklable arguments works too.  A party count may carry its
protocol family (``Parties``), so tests parametrised over counts run under both families.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import smpc


class Parties(int):
    """A party count that also names the protocol family: an int (bounds and loops that use the count work
    as before) with a ``protocol`` ("dealer" or "replicated")."""

    protocol: str

    def __new__(cls, count: int, protocol: str = "dealer") -> Parties:
        value = super().__new__(cls, count)
        value.protocol = protocol
        return value

    def __repr__(self) -> str:
        return f"{int(self)}-{self.protocol}"


#: Three parties of the replicated family (no dealer).
REPLICATED = Parties(3, "replicated")


def run_parties(program: Callable[[smpc.Session], Any], n: int = 3, *, transport: str = "inproc",
                **options: Any) -> list[Any]:
    """``program(session)`` on every party; results in rank order.  Threads unless transport='zmq'.  The
    family is ``n``'s (``Parties``) unless ``protocol=`` is given."""
    options.setdefault("recv_timeout", 30.0)
    options.setdefault("timeout", 120.0)
    options.setdefault("protocol", getattr(n, "protocol", "dealer"))
    return smpc.run_local(program, parties=int(n), transport=transport, **options)


def share_from(session: smpc.Session, values: list[Any]) -> list[smpc.SharedTensor]:
    """Share ``values[i]`` from party ``i % n`` (every party passes the same list; non-owners' entries are
    ignored), so inputs come from different owners."""
    shared = []
    for index, value in enumerate(values):
        owner = index % session.world_size
        shared.append(session.share(value if session.rank == owner else None, owner=owner))
    return shared
