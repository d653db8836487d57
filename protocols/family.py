"""A protocol family: how secrets are held and computed on.  A session holds one family object; SharedTensor,
smpc.nn and the CLI call it and never ask which family it is.

A secret is held as ``Shares``: a tuple of int64 tensors of the secret's shape, the parts this party holds (one
for the additive family, where party i holds x_i of x = sum x_i; two for the replicated family, where party i
holds (x_i, x_{i+1}) of x = x_0 + x_1 + x_2).  Local structure (reshape, index, cat, ...) applies to every part
alike (``map``, ``zip``); everything else goes through the family's methods.

Two families:
  * ``protocols.additive.AdditiveFamily`` ("dealer"): n >= 2 parties, additive shares, a dealer process for
    the correlated randomness.
  * ``protocols.replicated.ReplicatedFamily`` ("replicated"): exactly three parties, 2-out-of-3 replicated
    shares, no dealer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from protocols.party import Party

#: A party's shares of one secret: its parts, each a tensor of the secret's shape.
Shares = tuple[torch.Tensor, ...]

#: The names of the two families, as sessions, rosters and share files spell them.
FAMILIES = ("dealer", "replicated")


class Family(Protocol):
    """What a session needs from a protocol family.  ``party`` is this party's protocol-level view."""

    name: str
    party: Party

    # -- holding secrets --------------------------------------------------------------------------------
    def share(self, encoded: torch.Tensor | None, owner: int) -> Shares:
        """Secret-share the owner's encoded tensor; the others pass None."""

    def public(self, encoded: torch.Tensor) -> Shares:
        """Shares of a public encoded value (no communication)."""

    def add_public(self, x: Shares, encoded: torch.Tensor) -> Shares:
        """Shares of x + p for public encoded p (broadcasting), no communication."""

    def reveal(self, x: Shares, to: int | None = None) -> torch.Tensor | None:
        """Open x to every party, or to party ``to`` only (the others get None)."""

    def rerandomize(self, x: Shares) -> Shares:
        """Fresh shares of the same value (no communication)."""

    def local(self, x: Shares) -> torch.Tensor:
        """This party's parts as one int64 tensor (parts stacked on a new first axis when there are several)."""

    def from_local(self, local: torch.Tensor) -> Shares:
        """The inverse of ``local``."""

    # -- arithmetic -------------------------------------------------------------------------------------
    def mul(self, x: Shares, y: Shares, *, rescale: bool = True) -> Shares:
        """Elementwise product (broadcasting), truncated by 2^frac_bits when ``rescale``."""

    def matmul(self, x: Shares, y: Shares, *, rescale: bool = True) -> Shares:
        """torch.matmul of two shared values, truncated when ``rescale``."""

    def truncate(self, x: Shares, divisor: int | None = None) -> Shares:
        """floor(x / divisor) or that plus one; divisor defaults to 2^frac_bits."""

    # -- deferred truncation (``smpc.deferred``) ---------------------------------------------------------
    #: The largest bound_bits ``truncate_additive`` takes (above product_bits only for an exact truncation).
    max_bound_bits: int

    def product(self, x: Shares, y: Shares, *, matmul: bool = False) -> torch.Tensor:
        """This party's additive share of x * y (x @ y with ``matmul``) at double scale, not truncated:
        ``mul`` / ``matmul`` is this, then ``truncate_additive``."""

    def additive(self, x: Shares) -> torch.Tensor:
        """This party's additive share of x (local; a view, not a copy)."""

    def truncate_additive(self, z: torch.Tensor, divisor: int, bound_bits: int) -> Shares:
        """Shares of floor(z / divisor) (or that plus one) for an additively shared z with |z| < 2^bound_bits."""

    #: Whether ``truncate_additive_many`` costs the rounds of one truncation (so waiting truncations are worth
    #: settling together); else it is one truncation after another.
    settles_together: bool

    def truncate_additive_many(self, items: Sequence[tuple[torch.Tensor, int, int]]) -> list[Shares]:
        """``truncate_additive`` of each (z, divisor, bound_bits), in order."""

    def call(self, function: Callable[..., Any], *inputs: Shares, **options: Any) -> Any:
        """Run an additive-share protocol ``function(party, *tensors, **options)`` (a comparison, an
        approximation) on shared inputs; returns Shares, or a tuple of Shares where ``function`` returns a
        tuple."""

    def call_truncated(self, function: Callable[..., Any], z: torch.Tensor, divisor: int, bound_bits: int,
                       base: Shares | None = None, **options: Any) -> tuple[Shares, Any]:
        """(x, ``call(function, x)``) for x = floor(z / divisor) (or that plus one) + base, z additively shared
        with |z| < 2^bound_bits, base shared (broadcasting) or None: a deferred truncation settled into a call.
        The same values and bytes as truncating first; a family may spend fewer rounds (the replicated one: 1
        fewer)."""

    def preprocess(self, plan: list, times: int, *, wait: bool = True) -> None:
        """Make ``times`` repetitions of a recorded plan's correlated randomness ahead of time (or nothing,
        where the family makes it inline)."""


def map_parts(x: Shares, function: Callable[[torch.Tensor], torch.Tensor]) -> Shares:
    """``function`` applied to every part (a local, structural operation)."""
    return tuple(function(part) for part in x)


def zip_parts(x: Shares, y: Shares, function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Shares:
    """``function`` applied to matching parts of two secrets (a local, linear operation)."""
    if len(x) != len(y):
        raise ValueError("cannot combine shares of different protocol families")
    return tuple(function(a, b) for a, b in zip(x, y))


def join_parts(items: Sequence[Shares], function: Callable[[list[torch.Tensor]], torch.Tensor]) -> Shares:
    """``function`` (torch.cat, torch.stack) applied part by part to several secrets."""
    count = len(items[0])
    if any(len(item) != count for item in items):
        raise ValueError("cannot combine shares of different protocol families")
    return tuple(function([item[index] for item in items]) for index in range(count))
