"""Secure range tests: one shared bit saying whether any element of a shared value left a public power-of-two
bound, so that a session can refuse a product that wrapped instead of computing on with it.

Where the fixed-point range is decided.  ``fixedpoint.FixedPoint`` bounds every value by |v| < 2^int_bits,
products before truncation included: a product z of two encoded values is at scale 2^(2 frac_bits), and the
truncation (``protocols.additive.truncation``, and the replicated family's fused form) is exact only for
|z| < 2^product_bits, product_bits = int_bits + 2 frac_bits.  So the test of a product is the truncation's own
precondition, on z before it is truncated: |z| < 2^product_bits, which is exactly |x y| < 2^int_bits for the
real values.  The ring Z_2^64 holds z = x y 2^(2 frac_bits) without wrapping while |z| < 2^63; a z that wrapped
is seen modulo 2^64, and the test still flags it unless it landed within 2^product_bits of a multiple of 2^64,
which needs |x y| >= 2^(64 - 2 frac_bits) - 2^int_bits (2^32 - 2^15 by default).  Operands that are themselves
within the range (|x|, |y| < 2^int_bits, as ``encode`` and every checked product leave them) cannot get there
while 2 int_bits + 2 frac_bits <= 63 (62 by default).

Both functions are written on additive shares; the replicated family runs them in its helper sub-session.
"""

from __future__ import annotations

import torch

from protocols.additive.compare import ltz
from protocols.additive.truncation import truncate
from protocols.party import Party

#: The largest bound the test accepts: x - 2^b must not wrap for any in-range x, so 2^(b+1) <= 2^63.
MAX_BOUND_BITS = 62


def out_of_range(party: Party, x: torch.Tensor, bound_bits: int) -> torch.Tensor:
    """Additive shares of one unscaled bit (shape ()): 1 when some element of x, read as a signed ring
    element, has |x| >= B = 2^bound_bits, else 0.  Only this bit is meant to be opened.

    Steps:
      1. For every element, in ONE batched ``ltz`` of 2k values: a = [x - B < 0] and b = [-x - B < 0] (party 0
         subtracts the public B).
      2. Locally, the out-of-range count c = sum (2 - a - b) = 2k - sum a - sum b (party 0 adds 2k).  Each
         term is 0 for x in (-B, B) and 1 or 2 otherwise, for every ring element x (B <= 2^62: x - B and -x - B
         only wrap for x beyond the bound, and then to a non-negative value), so 0 <= c <= 2k.
      3. ``ltz`` of -c: [c > 0], the single bit "some element is out of range".
    Rounds: 16 (two ``ltz`` of 8 rounds each, one after the other).  Bytes sent per party: ``ltz_bytes(2k) +
    ltz_bytes(1)`` times (n-1), about 65 (n-1) per element plus 145 (n-1); the dealer sends the last party
    ``ltz_dealer_bytes(2k) + ltz_dealer_bytes(1)``, about 63.2 per element.
    Error: none: the bit is exact for every ring element (no band around the bound).  An empty x costs
    nothing and gives 0.  Raises ValueError for bound_bits outside 1..62.
    """
    if not 1 <= bound_bits <= MAX_BOUND_BITS:
        raise ValueError(f"bound_bits must be in 1..{MAX_BOUND_BITS}, got {bound_bits}")
    first = party.rank == 0
    flat = x.reshape(-1)
    if flat.numel() == 0:  # shapes are public: every party skips alike
        return torch.zeros((), dtype=torch.int64, device=x.device)
    bound = (1 << bound_bits) if first else 0
    below = ltz(party, torch.cat([flat - bound, -flat - bound]))
    count = -below.sum()
    if first:
        count = count + below.numel()
    return ltz(party, (-count).reshape(1)).reshape(())


def truncate_checked(party: Party, z: torch.Tensor, divisor: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(shares of z truncated by ``divisor``, shares of the bit [some |z| >= 2^product_bits]) for a product z at
    double scale: the truncation and the range test of its precondition in one protocol, so that the replicated
    family returns both to replicated shares in one round.

    Steps: 1. ``truncate(z, divisor)`` (divisor defaults to 2^frac_bits); 2. ``out_of_range(z, product_bits)``.
    Rounds: 1 + 16.  Bytes sent per party: the truncation's 8 (n-1) k plus ``out_of_range``'s.
    Error: the truncation's (|result - z/d| < 1 unit) where the bit is 0; where it is 1 the result is not to be
    used.  The bit itself is exact (see ``out_of_range``).
    """
    flag = out_of_range(party, z, party.encoding.product_bits)
    return truncate(party, z, divisor), flag
