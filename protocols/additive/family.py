"""The additive family ("dealer"): n >= 2 parties hold additive shares x = x_0 + ... + x_{n-1} mod 2^64, and a
dealer process of its own makes the correlated randomness (Beaver and matrix triples, truncation pairs, masked
bits).  Each party's ``Shares`` have one part, its x_i."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from protocols.additive import arithmetic
from protocols.additive.arithmetic import matmul, mul
from protocols.additive.dealer import request_plan
from protocols.additive.sharing import add_public, rerandomize, reveal, share, share_public
from protocols.additive.truncation import MAX_BOUND_BITS, truncate
from protocols.family import Shares
from protocols.party import Party


class AdditiveFamily:
    """The additive family for one party (see the module docstring).  Every method is a thin call of the
    protocol function of the same name, whose docstring gives its steps, rounds, bytes and error."""

    name = "dealer"

    def __init__(self, party: Party) -> None:
        self.party = party
        self.max_bound_bits = MAX_BOUND_BITS if party.truncation == "dealer" else party.encoding.product_bits

    def share(self, encoded: torch.Tensor | None, owner: int) -> Shares:
        return (share(self.party, encoded, owner),)

    def public(self, encoded: torch.Tensor) -> Shares:
        return (share_public(self.party, encoded),)

    def add_public(self, x: Shares, encoded: torch.Tensor) -> Shares:
        return (add_public(self.party, x[0], encoded),)

    def reveal(self, x: Shares, to: int | None = None) -> torch.Tensor | None:
        return reveal(self.party, x[0], to=to)

    def rerandomize(self, x: Shares) -> Shares:
        return (rerandomize(self.party, x[0]),)

    def local(self, x: Shares) -> torch.Tensor:
        return x[0].clone()

    def from_local(self, local: torch.Tensor) -> Shares:
        return (local,)

    def mul(self, x: Shares, y: Shares, *, rescale: bool = True) -> Shares:
        return (mul(self.party, x[0], y[0], rescale=rescale),)

    def matmul(self, x: Shares, y: Shares, *, rescale: bool = True) -> Shares:
        return (matmul(self.party, x[0], y[0], rescale=rescale),)

    def truncate(self, x: Shares, divisor: int | None = None) -> Shares:
        return (truncate(self.party, x[0], divisor),)

    def product(self, x: Shares, y: Shares, *, matmul: bool = False) -> torch.Tensor:
        return (arithmetic.matmul if matmul else arithmetic.mul)(self.party, x[0], y[0], rescale=False)

    def additive(self, x: Shares) -> torch.Tensor:
        return x[0]

    def truncate_additive(self, z: torch.Tensor, divisor: int, bound_bits: int) -> Shares:
        return (truncate(self.party, z, divisor, bound_bits),)

    #: One truncation after another (each needs its own dealer pair and opening; nothing batches them yet).
    settles_together = False

    def truncate_additive_many(self, items: Sequence[tuple[torch.Tensor, int, int]]) -> list[Shares]:
        return [self.truncate_additive(*item) for item in items]

    def preprocess(self, plan: list, times: int, *, wait: bool = True) -> None:
        request_plan(self.party, plan, times, wait=wait)

    def call_truncated(self, function: Callable[..., Any], z: torch.Tensor, divisor: int, bound_bits: int,
                       base: Shares | None = None, **options: Any) -> tuple[Shares, Any]:
        """The truncation (1 round), then ``call``: nothing to save in this family."""
        value = truncate(self.party, z, divisor, bound_bits)
        settled = (value if base is None else value + base[0],)
        return settled, self.call(function, settled, **options)

    def call(self, function: Callable[..., Any], *inputs: Shares, **options: Any) -> Any:
        result = function(self.party, *(x[0] for x in inputs), **options)
        if isinstance(result, tuple):
            return tuple((part,) for part in result)
        return (result,)
