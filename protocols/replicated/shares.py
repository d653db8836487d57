"""The maths of 2-out-of-3 replicated sharing over Z_2^64, apart from any network.

A secret x = x_0 + x_1 + x_2 (mod 2^64); party i holds the pair (x_i, x_{i+1}) (indices mod 3), so any two
parties hold all three components and any one party's pair is uniform on its own.  Pure functions of tensors;
``protocols.replicated`` calls them with PRG masks and received components.
"""

from __future__ import annotations

import torch

PARTIES = 3


def next_rank(rank: int) -> int:
    """The party holding our second component as its first: i + 1."""
    return (rank + 1) % PARTIES


def previous_rank(rank: int) -> int:
    """The party holding our first component as its second: i - 1."""
    return (rank - 1) % PARTIES


def split(value: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> list[torch.Tensor]:
    """The components [x_0, x_1, x_2] of ``value`` with x_0 = ``first`` and x_1 = ``second``."""
    return [first, second, value - first - second]


def pair_of(components: list[torch.Tensor], rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Party ``rank``'s pair (x_rank, x_{rank+1}) of the three components."""
    return components[rank], components[next_rank(rank)]


def recombine(pair: tuple[torch.Tensor, torch.Tensor], missing: torch.Tensor) -> torch.Tensor:
    """The secret from one party's pair and the component it lacks (x_{i+2}, from party i + 1)."""
    return pair[0] + pair[1] + missing


def local_product(x: tuple[torch.Tensor, torch.Tensor], y: tuple[torch.Tensor, torch.Tensor], rank: int,
                  product: object = torch.mul, product_add: object = None) -> torch.Tensor:
    """Party ``rank``'s additive share z_i of x * y (or x @ y with ``product=ring_matmul``); the three z_i add
    up to the product, every cross term x_j y_k exactly once, and are not yet a sharing anyone may see.

    Each party covers the terms of its own pair (x_i, x_{i+1}) x (y_i, y_{i+1}), split so that the parties
    together make 5 products, not 6:
      1. Party 0 (holding x_0, x_1): (x_0 + x_1)(y_0 + y_1), the four terms x_0 y_0, x_0 y_1, x_1 y_0, x_1 y_1
         in one product.
      2. Party 1 (x_1, x_2): x_1 y_2 + x_2 y_1, the two cross terms only (its diagonal x_1 y_1 is party 0's).
      3. Party 2 (x_2, x_0): x_2 (y_2 + y_0) + x_0 y_2, the terms x_2 y_2, x_2 y_0, x_0 y_2.
    No split can give every party a single product: over Z_2^64 a party's 2 x 2 block of terms has rank 1
    only if its diagonal coefficients are both odd, and two such parties would cover a shared diagonal term
    an even number of times.  For a matmul that is one ring GEMM less in all, and party 0 (which also makes
    the fused truncation's masks and correction) does one instead of two.
    ``product_add(out, a, b)``, where given, adds product(a, b) into ``out`` in place (``ring_matmul_add``: the
    GEMM accumulates); otherwise the second product is added with ``add_``.
    Rounds: 0.  Bytes: 0.  Error: none (exact modulo 2^64)."""
    assert callable(product)
    if rank == 0:
        return product(x[0] + x[1], y[0] + y[1])
    if rank not in (1, 2):
        raise ValueError(f"a replicated party's rank is 0, 1 or 2, got {rank}")
    first, second = ((x[0], y[1]), (x[1], y[0])) if rank == 1 else ((x[0], y[0] + y[1]), (x[1], y[0]))
    out = product(*first)
    if product_add is None:
        return out.add_(product(*second))
    assert callable(product_add)
    return product_add(out, *second)


def zero_share(from_next: torch.Tensor, from_previous: torch.Tensor) -> torch.Tensor:
    """Party i's share a_i = F(k_{i,i+1}) - F(k_{i-1,i}) of zero: every pair mask enters once with each sign."""
    return from_next - from_previous


def two_of_two(pair: tuple[torch.Tensor, torch.Tensor], rank: int) -> torch.Tensor | None:
    """The free view of a replicated secret as a two-party additive sharing between parties 1 and 2: party 1
    holds x_1 + x_2, party 2 holds x_0, party 0 nothing (None)."""
    if rank == 1:
        return pair[0] + pair[1]
    if rank == 2:
        return pair[1]
    return None
