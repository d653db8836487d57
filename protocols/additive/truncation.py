"""Truncation: divide a shared fixed-point value by a public divisor (2^frac_bits after every product).

Two methods, chosen per session (``Party.truncation``):

* ``"dealer"`` (default, any n >= 2): a dealer pair (r, floor(r/d), and a correction share for a masked sum
  that wrapped around the ring) masks the value, which is opened once.  One round, always, and exact to one
  unit in the last place for every input inside the fixed-point bound.
* ``"local"`` (two parties only): SecureML's local shift, no communication, but each element is wrong by about
  2^(64-frac_bits) with probability 2^(product_bits+1-64); refused when the session's expected failures would
  exceed its budget (``Party.check_truncation_budget``).
"""

from __future__ import annotations

import numpy as np
import torch

from protocols.additive.dealer import truncation_pair, unsigned_divide
from protocols.party import Party


def truncate(party: Party, shares: torch.Tensor, divisor: int | None = None, bound_bits: int | None = None
             ) -> torch.Tensor:
    """Shares of floor(x / divisor) or that plus one, for a shared x with |x| < 2^bound_bits.

    ``divisor`` defaults to 2^frac_bits (rescaling after a product), ``bound_bits`` to the encoding's
    product_bits; a larger bound (up to ``truncation_fits``) serves a product already scaled by a public
    factor (``smpc.tensor``'s deferred truncation), for the dealer method only.  See the module docstring for
    the two methods; ``_dealer_divide`` and ``_local_shift`` give their steps and costs.
    Error: |result - x/divisor| < 1 (one unit in the last place); no failure for the dealer method.
    """
    divisor = party.encoding.scale if divisor is None else int(divisor)
    if divisor < 1:
        raise ValueError(f"divisor must be a positive integer, got {divisor}")
    product_bits = party.encoding.product_bits
    bound_bits = product_bits if bound_bits is None else int(bound_bits)
    if bound_bits > product_bits and party.truncation != "dealer":
        raise ValueError(f"a bound above 2^{product_bits} needs the dealer's truncation, not local shifts")
    if divisor == 1 or shares.numel() == 0:
        return shares.clone()
    party.check_truncation_budget(shares.numel())
    party.truncated_elements += shares.numel()
    if party.truncation == "local":
        if divisor & (divisor - 1):
            raise ValueError("local-shift truncation divides by powers of two only; use truncation='dealer'")
        return _local_shift(party, shares, divisor.bit_length() - 1)
    return _dealer_divide(party, shares, divisor, bound_bits)


def _local_shift(party: Party, shares: torch.Tensor, bits: int) -> torch.Tensor:
    """Two-party local shift (SecureML, Mohassel and Zhang 2017, Theorem 1).

    Steps: party 0 keeps x_0 >> bits (arithmetic), party 1 keeps -((-x_1) >> bits).
    Rounds: 0.  Bytes: 0.
    Error: at most 1 unit in the last place with probability 1 - 2^(l+1-64) per element, where
    |x| < 2^l (l = product_bits); otherwise wrong by about 2^(64-bits).
    """
    if party.rank == 0:
        return shares >> bits
    return -((-shares) >> bits)


def _dealer_divide(party: Party, shares: torch.Tensor, divisor: int, bound_bits: int) -> torch.Tensor:
    """Exact truncation with one opening: a dealer pair whose extra share corrects a wrapped masked sum.

    Let |x| < B = 2^bound_bits (product_bits unless a caller knows better) and O = divisor * ceil(B / divisor),
    so x' = x + O lies in [0, T) with T = O + B <= 2^63.  The dealer pair gives shares of r (uniform in Z_2^64,
    read unsigned), s = floor(r/d) and u = MSB(r) (s + ceil((2^64 - r)/d)).
      1. Party 0 adds the public offset O to its share.
      2. Open c = x' + r mod 2^64 (one round).  c is uniform and independent of x.
      3. The sum wrapped (w = 1) exactly when c < T and MSB(r) = 1: if c >= T it cannot have wrapped (a wrap
         leaves c < x' < T); if c < T and MSB(r) = 1, an unwrapped sum would be >= r >= 2^63 > T; if
         MSB(r) = 0, x' + r < T + 2^63 <= 2^64.  So w = [c < T] MSB(r), with [c < T] public.
      4. Without a wrap, x' = c - r and floor(c/d) - s is floor(x'/d) or floor(x'/d) + 1.  With one,
         x' = c + (2^64 - r) and floor(c/d) + ceil((2^64 - r)/d) is floor(x'/d) or that + 1.  Both are
         floor(c/d) - s + w (s + ceil((2^64 - r)/d)) = floor(c/d) - s + [c < T] u, linear in the shares:
         each party keeps -s_i + [c < T] u_i, party 0 also adds floor(c/d) - O/d.
    Rounds: 1, always.  Bytes sent per party: 8 (n-1) k; the dealer sends the last party 16 k.
    Error: result - x/d lies in (-1, 1) units of the result; never more, for every x with |x| < B.
    """
    offset, threshold = wrap_constants(bound_bits, divisor)
    flat = shares.reshape(-1)
    pair = truncation_pair(party, flat.shape, divisor)
    values = flat + (offset if party.rank == 0 else 0)
    opened = party.open(values + pair.a, "truncate").cpu().numpy().view(np.uint64)
    floor_s, correction = pair.c[0], pair.c[1]
    result = finish_divide(opened, floor_s, correction, divisor, offset, threshold, first=party.rank == 0)
    return result.reshape(shares.shape)


#: The largest bound the exact truncation takes (``truncation_fits`` also limits it with the divisor).
MAX_BOUND_BITS = 62


def truncation_fits(bound_bits: int, divisor: int) -> bool:
    """Whether the exact truncation can divide values below 2^bound_bits by ``divisor`` (``wrap_constants``)."""
    bound = 1 << bound_bits
    return divisor * -(-bound // divisor) + bound <= 1 << 63


def wrap_constants(product_bits: int, divisor: int) -> tuple[int, np.uint64]:
    """The public offset O (a multiple of ``divisor`` at least 2^product_bits, so x' = x + O >= 0) and the
    threshold T = O + 2^product_bits below which an opened c = x' + r may have wrapped (``_dealer_divide``).
    Raises ValueError where T > 2^63 (the wrap test needs it)."""
    bound = 1 << product_bits
    offset = divisor * -(-bound // divisor)
    if not truncation_fits(product_bits, divisor):
        raise ValueError(f"truncation by {divisor} needs product_bits + 1 <= 63 and a divisor below 2^62")
    return offset, np.uint64(offset + bound)


def finish_divide(opened: np.ndarray, floor_s: torch.Tensor, correction: torch.Tensor, divisor: int, offset: int,
                  threshold: np.uint64, *, first: bool) -> torch.Tensor:
    """Step 4 of ``_dealer_divide``, local to one party: its share -s_i + [c < T] u_i of floor(x/d), the
    ``first`` party also adding floor(c/d) - O/d.  ``opened`` is c read as uint64; a pure function."""
    wrapped = torch.from_numpy(opened < threshold).to(floor_s.device)
    result = torch.where(wrapped, correction, 0).sub_(floor_s)  # in place: no fresh pages for temporaries
    if first:
        quotient = torch.from_numpy(unsigned_divide(opened, divisor).view(np.int64)).to(floor_s.device)
        result.add_(quotient.sub_(offset // divisor))
    return result
