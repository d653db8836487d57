"""Secret random bits that no party knows: Bernoulli samples for privacy amplification by subsampling.

DP-SGD's accountant assumes each example joins each step's batch independently with probability q and that
whoever sees the output does not know which examples did.  A batch chosen from a seed every party knows would
void that assumption (the model owner is a party), so the sample is drawn here as shared bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protocols.additive.compare import ltz
from protocols.party import Party
from protocols.prg import AesCtrPrg, new_key

_TOP = 1 << 63


def bernoulli(party: Party, shape: Sequence[int], probability: float, *, key: bytes | None = None
              ) -> tuple[torch.Tensor, float]:
    """Additive shares of independent bits b with P(b = 1) = p', unknown to every single party, and p'.

    ``key``: this party's own AES-CTR key for its share of r (default: a fresh one from the OS's CSPRNG).  Each
    party passes its own (a test fixes one party's to show the bits still vary with the others').

    p' is ``probability`` rounded to a multiple of 2^-63 (returned, so an accountant can use the exact rate;
    ``representable_probability`` gives it beforehand).  For p > 1/2 the complement is drawn and flipped.

    Steps:
      1. Each party takes its share of r from a fresh AES-CTR key of its own (the OS's CSPRNG): r = sum r_i is
         uniform over Z_2^64 and independent of any n-1 shares.  No communication.
      2. m = MSB(r) = [r < 0] (``ltz``, exact).
      3. r' = r - 2^63 m, uniform over [0, 2^63) (local: every party multiplies its share of m by 2^63).
      4. b = [r' - c < 0] with c = round(p 2^63) (party 0 subtracts c; ``ltz`` again): r' - c lies in
         [-2^63, 2^63) so it does not wrap, and b = 1 exactly when r' < c, with probability c / 2^63.
    Rounds: 16 (two comparisons in sequence).  Bytes sent per party per element: 2 x 32.5 (n-1) (two ``ltz``
    calls, ``ltz_bytes``).  Dealer (the comparisons' masked bits, binary triples and random bits): 2 x 31.6
    bytes per element to the last party.
    Error: none; P(b = 1) is exactly p'.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"a probability must be in [0, 1], got {probability}")
    flip = probability > 0.5  # draw the complement, whose threshold fits below 2^62
    threshold = int(round((1.0 - probability if flip else probability) * _TOP))
    shape = tuple(int(d) for d in shape)
    count = int(torch.Size(shape).numel())
    own = AesCtrPrg(new_key() if key is None else key).ring(0, count).reshape(shape).to(party.device)
    top = ltz(party, own)
    below = own - (top << 63)  # 2^63 m mod 2^64: the shift wraps in int64 as the ring does
    if party.rank == 0:
        below = below - threshold
    bits = ltz(party, below)
    if flip:
        bits = (1 if party.rank == 0 else 0) - bits
    return bits, representable_probability(probability)


def representable_probability(probability: float) -> float:
    """The probability ``bernoulli`` draws with for ``probability``: rounded to a multiple of 2^-63."""
    if probability > 0.5:
        return 1.0 - round((1.0 - probability) * _TOP) / _TOP
    return round(probability * _TOP) / _TOP
