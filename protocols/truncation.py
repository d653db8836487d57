"""Truncation: divide a shared fixed-point value by a public divisor (2^frac_bits after every product).

Two methods, chosen per session (``Party.truncation``):

* ``"dealer"`` (default, any n >= 2): a dealer pair (r, floor(r/d)) masks the value, which is opened once.
  Exact to one unit in the last place for every input inside the fixed-point bound: the one case where the
  masked sum could have wrapped around the ring is visible from the (uniform, input-independent) opened value
  itself, and only those elements are opened again with a fresh pair.
* ``"local"`` (two parties only): SecureML's local shift, no communication, but each element is wrong by about
  2^(64-frac_bits) with probability 2^(product_bits+1-64); refused when the session's expected failures would
  exceed its budget (``Party.check_truncation_budget``).
"""

from __future__ import annotations

import numpy as np
import torch

from protocols.dealer import truncation_pair
from protocols.party import Party


def truncate(party: Party, shares: torch.Tensor, divisor: int | None = None) -> torch.Tensor:
    """Shares of floor(x / divisor) or that plus one, for a shared x with |x| < 2^product_bits.

    ``divisor`` defaults to 2^frac_bits (rescaling after a product).  See the module docstring for the two
    methods; ``_dealer_divide`` and ``_local_shift`` give their steps and costs.
    Error: |result - x/divisor| < 1 (one unit in the last place); no failure for the dealer method.
    """
    divisor = party.encoding.scale if divisor is None else int(divisor)
    if divisor < 1:
        raise ValueError(f"divisor must be a positive integer, got {divisor}")
    if divisor == 1 or shares.numel() == 0:
        return shares.clone()
    party.check_truncation_budget(shares.numel())
    party.truncated_elements += shares.numel()
    if party.truncation == "local":
        if divisor & (divisor - 1):
            raise ValueError("local-shift truncation divides by powers of two only; use truncation='dealer'")
        return _local_shift(party, shares, divisor.bit_length() - 1)
    return _dealer_divide(party, shares, divisor)


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


def _dealer_divide(party: Party, shares: torch.Tensor, divisor: int) -> torch.Tensor:
    """Probabilistic truncation with a dealer pair, made exact by re-opening the ambiguous elements.

    Let |x| < B = 2^product_bits and O = divisor * ceil(B / divisor), so x' = x + O lies in [0, T) with
    T = O + B < 2^63.
      1. Party 0 adds the public offset O to its share.
      2. Take a dealer pair (r, s = floor(r/d)) per element; open c = x' + r mod 2^64 (one round).
      3. c is uniform and independent of x.  If c >= T (as unsigned) the sum x' + r cannot have wrapped (a
         wrap leaves c < x' < T), so floor(c/d) - s is floor(x'/d) or floor(x'/d) + 1 exactly; the result is
         -s plus, at party 0, floor(c/d) - O/d.
      4. Elements with c < T (probability T/2^64, about 2^(product_bits+1-64) each, whatever x is) are
         opened again with fresh pairs until none is left.
    Rounds: 1, plus one more with probability about k * 2^(product_bits+1-64).
    Bytes sent per party: 8 (n-1) k (and the same for each re-opened element); the dealer sends the last
    party 8 k.  Error: result - x/d lies in (-1, 1) units of the result; never more.
    """
    bound = 1 << party.encoding.product_bits
    offset = divisor * -(-bound // divisor)
    threshold = np.uint64(offset + bound)
    result = torch.empty(shares.numel(), dtype=torch.int64)
    pending = torch.arange(shares.numel())
    values = shares.reshape(-1) + (offset if party.rank == 0 else 0)
    while pending.numel():
        pair = truncation_pair(party, (pending.numel(),), divisor)
        opened = party.exchange(values + pair.a, "truncate").numpy().view(np.uint64)
        clear = torch.from_numpy(opened >= threshold)
        quotient = torch.from_numpy((opened // np.uint64(divisor)).view(np.int64))
        mine = -pair.c
        if party.rank == 0:
            mine = mine + quotient - offset // divisor
        result[pending[clear]] = mine[clear]
        pending, values = pending[~clear], values[~clear]
    return result.reshape(shares.shape)
