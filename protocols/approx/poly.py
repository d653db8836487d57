"""Powers and polynomials of a shared fixed-point value with public coefficients, in few rounds."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protocols.additive.arithmetic import mul
from protocols.additive.truncation import truncate
from protocols.party import Party


def powers(party: Party, x: torch.Tensor, degree: int) -> list[torch.Tensor]:
    """Shares of [x, x^2, ..., x^degree] (fixed point), computed level by level.

    Steps: level j multiplies x^(2^(j-1)) by every power known so far, all in ONE batched Beaver product
    (and one truncation), doubling the highest power each level.
    Rounds: 2 ceil(log2(degree)).  Bytes per party: 24 (n-1) k per new power (Beaver + truncation).
    Error: each product adds < 1 unit (2^-frac_bits) to the errors of its factors; for |x| <= 1 the error of
    x^i stays below i units.
    """
    if degree < 1:
        raise ValueError("degree must be at least 1")
    result = [x]
    while len(result) < degree:
        top = result[-1]
        count = min(len(result), degree - len(result))
        lefts = torch.cat([top.reshape(-1)] * count)
        rights = torch.cat([p.reshape(-1) for p in result[:count]])
        products = mul(party, lefts, rights).reshape(count, *x.shape)
        result.extend(products.unbind(0))
    return result


def polynomial(party: Party, x: torch.Tensor, coefficients: Sequence[float],
               known_powers: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Shares of sum_i c_i x^i (c_0 is the constant) for public float coefficients.

    Steps: 1. the powers of x (``powers``, or ``known_powers`` if given); 2. multiply each power by its encoded
    coefficient locally and add (exact in the ring, at double scale); 3. one truncation; party 0 adds c_0.
    Rounds: 2 ceil(log2 d) + 1.  Bytes: as ``powers`` plus 8 (n-1) k.
    Error: sum_i |c_i| err(x^i) + |x^i| 2^-(f+1) |c_i|-rounding + 1 unit.
    """
    degree = len(coefficients) - 1
    if degree < 1:
        raise ValueError("a polynomial of degree at least 1 is needed")
    encoding = party.encoding
    terms = list(known_powers) if known_powers is not None else powers(party, x, degree)
    if len(terms) < degree:
        raise ValueError(f"{len(terms)} powers given for a polynomial of degree {degree}")
    total = torch.zeros_like(x)
    for coefficient, power in zip(coefficients[1:], terms):
        total = total + power * int(round(coefficient * encoding.scale))
    result = truncate(party, total)
    if party.rank == 0:
        result = result + int(round(coefficients[0] * encoding.scale))
    return result
