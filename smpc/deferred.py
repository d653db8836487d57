"""Deferred truncation: a product's rescaling waits until its value is used, so that a product by a public float
right after it shares the one truncation.

``x @ w`` (or ``x * y``, ``x * 0.5``, ``x.mean()``) leaves a ``Deferred``: this party's additive share of the
product z at double scale and the divisor still owed.  The next use of the tensor settles it with the family's
exact truncation (``Family.truncate_additive``: 2 rounds in the replicated family, 1 in the dealer family), just
as the product would have.  A product by a public float is local on an additive sharing, so
``(x @ w) * 0.01`` or ``x.mean() * lr`` multiplies z by the encoded float C and divides once, by 2^frac_bits
more: one truncation instead of two, and one rounding instead of two.

The bound: the truncation is exact for |z| < 2^bound_bits (``protocols.additive.truncation``).  A product of
in-range values has |z| < 2^product_bits; times C it is below 2^(product_bits + ceil(log2 |C|)).  A fold that would
pass the family's ``max_bound_bits`` (62 for the exact truncations; product_bits for the two-party local shift)
or the truncation's limit with the divisor (``truncation_fits``) settles first instead, as before.  Nothing
changes what a party sends or learns: the same truncation protocol runs, on z C instead of z.

A sum with a settled value waits too: ``x @ w + b`` is floor(z / d) + b with b added after the truncation (a
local addition whenever it happens), and ``b - x @ w`` truncates -z.  That is what lets a helper call of the
replicated family take the truncation in (``Family.call_truncated``): ``(x @ w + b).sigmoid()`` spends one round
fewer there than settling first.  Such a sum folds no public float (its b would need a truncation of its own).

Where the family settles several truncations in the rounds of one (``Family.settles_together``: the replicated
family), the session keeps its waiting values in program order (``Waiting``), and the first use of any of them
settles them all: in a training step, ``w - lr * grad_w`` and ``b - lr * grad_b`` then cost the 2 rounds of one
truncation.  Every party runs the same operations on shared values in the same order, so the batches agree; a
value whose truncation was folded into another leaves the list (it settles on its own if used after all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from protocols.additive.truncation import truncation_fits
from protocols.family import Family, Shares, zip_parts


@dataclass(frozen=True)
class Deferred:
    """floor(z / divisor) (or that plus one), plus ``base`` where given, not yet computed: ``value`` is this
    party's additive share of z, |z| < 2^bound_bits; ``base`` the family's shares of a settled value (broadcast
    to ``value``'s shape)."""

    value: torch.Tensor
    divisor: int
    bound_bits: int
    base: Shares | None = None
    #: Where this value shares another's truncation (a sum, a negation, a detached copy): that value (a
    #: SharedTensor), and this one = sign * it (its elements in this shape) + extra.  Settling this settles the
    #: origin (one truncation for both), then adds locally; ``value`` and ``base`` above say the same in full,
    #: for a call that takes the truncation in.
    origin: Any = None
    sign: int = 1
    extra: Shares | None = None

    def from_origin(self, origin_parts: Shares) -> Shares:
        """This value's shares from its settled origin's: local."""
        shape = self.value.shape
        parts = tuple((part if self.sign > 0 else -part).reshape(shape) for part in origin_parts)
        return parts if self.extra is None else zip_parts(parts, self.extra, torch.add)

    def to_origin(self, parts: Shares, origin_shape: torch.Size) -> Shares:
        """The origin's shares from this value's (settled inside a call): local, the inverse of ``from_origin``."""
        if self.extra is not None:
            parts = zip_parts(parts, self.extra, torch.sub)
        return tuple((part if self.sign > 0 else -part).reshape(origin_shape) for part in parts)

    def settle(self, family: Family) -> Shares:
        """The family's shares of the result: one exact truncation (its rounds and bytes), then ``base`` added."""
        truncated = family.truncate_additive(self.value, self.divisor, self.bound_bits)
        return truncated if self.base is None else zip_parts(truncated, self.base, torch.add)

    def plus(self, settled: Shares, *, negate: bool = False) -> Deferred | None:
        """base + this (``negate``: base - this, truncating -z, as exact) for a settled value of the same shape
        or one that broadcasts to it with as many elements; None where more elements would need a truncation
        (the caller settles first)."""
        shape = torch.broadcast_shapes(self.value.shape, settled[0].shape)
        if shape.numel() != self.value.numel():
            return None
        owed = self.negated() if negate else self
        base = settled if owed.base is None else zip_parts(owed.base, settled, torch.add)
        # The same elements in another shape ((), (1,) and (1, 1) alike): each party's additive share spreads.
        return Deferred(owed.value.expand(shape), self.divisor, self.bound_bits, base)

    def negated(self) -> Deferred:
        """-(this): truncating -z, as exact."""
        return Deferred(-self.value, self.divisor, self.bound_bits,
                        None if self.base is None else tuple(-part for part in self.base))

    def scaled(self, family: Family, encoded: torch.Tensor, scale: int) -> Deferred | None:
        """z * C for a public encoded float C (broadcasting), owing ``scale`` more: local.  None where the bound
        would exceed what the family's truncation takes, or where a settled ``base`` would need a truncation of
        its own (the caller settles and multiplies as usual)."""
        if self.base is not None or self.origin is not None:
            return None
        magnitude = int(encoded.abs().max()) if encoded.numel() else 0
        bound_bits = self.bound_bits + (max(magnitude, 1) - 1).bit_length()  # |z C| < 2^b |C| <= 2^(b + this)
        divisor = self.divisor * scale
        if bound_bits > family.max_bound_bits or not truncation_fits(bound_bits, divisor):
            return None
        return Deferred(self.value * encoded.to(self.value.device), divisor, bound_bits)


def settle_many(family: Family, owed: Sequence[Deferred]) -> list[Shares]:
    """Each deferred value's shares, with one ``truncate_additive_many`` for them all."""
    if len(owed) == 1:
        return [owed[0].settle(family)]
    truncated = family.truncate_additive_many([(d.value, d.divisor, d.bound_bits) for d in owed])
    return [t if d.base is None else zip_parts(t, d.base, torch.add) for t, d in zip(truncated, owed)]


class Waiting:
    """A session's values whose truncation waits, in program order (only where ``Family.settles_together``).
    Holds them until the next settle (a value nobody uses is settled with the rest: bytes, no round)."""

    def __init__(self) -> None:
        self._values: list[Any] = []

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: Any) -> None:
        self._values.append(value)

    def drop(self, value: Any) -> None:
        """``value``'s truncation went into another value's (a fold, a sum, a call): not settled with the rest."""
        self._values = [waiting for waiting in self._values if waiting is not value]

    def take(self, value: Any) -> list[Any]:
        """Every waiting value still deferred, with ``value`` (last if it was not waiting); empties the list.
        Only values with a truncation of their own wait (``Deferred.origin`` None)."""
        batch = [waiting for waiting in self._values if waiting._deferred is not None]
        if not any(waiting is value for waiting in batch):
            batch.append(value)
        self._values = []
        return batch
