"""One computing party's view of a session: its transport, its keys, its program counter and its counters.

Every party runs the same sequence of operations, so ``next_tag()`` yields the same number at the same point
of the program on every party; messages are matched by that tag, whatever order they arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from fixedpoint import FixedPoint
from network import Transport
from protocols.prg import AesCtrPrg

#: Tag 0 on every link is the key set-up; program tags and dealer request tags start at 1.
SETUP_TAG = 0

TRUNCATION_METHODS = ("dealer", "local")

#: Default ceiling on the expected number of wrong truncations in one session (local-shift method only;
#: the dealer method is exact within the fixed-point bound).
DEFAULT_FAILURE_BUDGET = 1e-6


class TruncationBudgetError(RuntimeError):
    """The configured truncation would exceed the session's budget of expected failures."""


@dataclass
class Party:
    """Everything a protocol function needs to act as party ``rank`` of ``n_parties``.

    ``dealer_prg`` is keyed with the dealer (seed-compressed triples); ``pair_prgs[j]`` with party j
    (input sharing).  The dealer is node ``n_parties`` of the transport.  ``audit``, when set, is called with
    (operation label, tag, opened value) for every value this party learns: each opening and each reveal.
    """

    rank: int
    n_parties: int
    transport: Transport
    encoding: FixedPoint
    dealer_prg: AesCtrPrg
    pair_prgs: Mapping[int, AesCtrPrg]
    truncation: str = "dealer"
    failure_budget: float = DEFAULT_FAILURE_BUDGET
    rounds: int = 0
    truncated_elements: int = 0
    dealer_requests: int = 0
    audit: Callable[[str, int, torch.Tensor], None] | None = field(default=None, repr=False)
    _tag: int = field(default=SETUP_TAG, repr=False)

    def __post_init__(self) -> None:
        if self.n_parties < 2:
            raise ValueError("a session needs at least two computing parties")
        if not 0 <= self.rank < self.n_parties:
            raise ValueError(f"rank {self.rank} outside 0..{self.n_parties - 1}")
        if self.truncation not in TRUNCATION_METHODS:
            raise ValueError(f"truncation must be one of {TRUNCATION_METHODS}, got {self.truncation!r}")
        if self.truncation == "local" and self.n_parties != 2:
            raise ValueError("local-shift truncation is only correct for two parties; use truncation='dealer'")

    @property
    def dealer_id(self) -> int:
        return self.n_parties

    @property
    def last(self) -> int:
        """The party that receives the dealer's correction shares."""
        return self.n_parties - 1

    @property
    def others(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n_parties) if i != self.rank)

    def next_tag(self) -> int:
        self._tag += 1
        return self._tag

    def next_dealer_request(self) -> int:
        self.dealer_requests += 1
        return self.dealer_requests

    def send(self, dst: int, tag: int, tensor: torch.Tensor) -> None:
        self.transport.send(dst, tag, _wire(tensor))

    def recv(self, src: int, tag: int, op: str) -> torch.Tensor:
        array = self.transport.recv(src, tag, op=op)
        return torch.from_numpy(np.array(array, copy=True))

    def exchange(self, tensor: torch.Tensor, op: str, *, xor: bool = False) -> torch.Tensor:
        """Open ``tensor``: send our share to every other party, return the sum (or, with ``xor``, the XOR)
        of all shares.  One round.

        Cost: (n-1) k itemsize bytes sent per party for k elements (8 for ring elements).
        """
        tag = self.next_tag()
        wire = _wire(tensor)
        for peer in self.others:
            self.transport.send(peer, tag, wire)
        total = tensor.clone()
        for peer in self.others:
            share = self.recv(peer, tag, op).reshape(tensor.shape)
            if share.dtype != tensor.dtype:
                raise ValueError(f"party {peer} sent {share.dtype} for {op}, expected {tensor.dtype}")
            if xor:
                total ^= share
            else:
                total += share
        self.rounds += 1
        if self.audit is not None:
            self.audit(op, tag, total)
        return total

    def check_truncation_budget(self, count: int) -> None:
        """Refuse a local-shift truncation that would push expected failures over the session budget."""
        if self.truncation != "local":
            return
        expected = (self.truncated_elements + count) * self.encoding.local_shift_failure_probability()
        if expected > self.failure_budget:
            raise TruncationBudgetError(
                f"local-shift truncation of {self.truncated_elements + count} elements in this session has "
                f"{expected:.3g} expected failures (each {self.encoding.local_shift_failure_probability():.3g} "
                f"with int_bits={self.encoding.int_bits}, frac_bits={self.encoding.frac_bits}), over the budget "
                f"of {self.failure_budget:g}; use truncation='dealer' (exact) or lower int_bits"
            )


def _wire(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu").contiguous().numpy()
