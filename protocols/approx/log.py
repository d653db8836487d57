"""Natural logarithm of a shared fixed-point value: log x = log x' + k ln 2 with x = 2^k x', x' in [0.5, 1).

Coefficients: minimax (Lawson's iteratively reweighted least squares, 3000 iterations, float64, numpy) of the
ABSOLUTE error of p(u) ~ log(x') on 200,001 evenly spaced x' in [0.5, 1], u = 4 x' - 3 in [-1, 1], monomial
basis in u.  Float64 max absolute error of p alone: 6.1e-5 (degree 4), 2.9e-8 (degree 8).
"""

from __future__ import annotations

import math

import torch

from protocols.approx.normalize import normalize, reduced_polynomial
from protocols.party import Party

LOG_COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "poly4": (-0.2876990789760894, 0.3330443783020287, -0.05533877531412524, 0.013468495159159787,
              -0.003535736659951247),
    "poly8": (-0.28768208129738665, 0.3333330829774034, -0.05555519706992538, 0.012348969377358918,
              -0.0030888261201569753, 0.000811478189755311, -0.00022287659266789845, 8.00304076445583e-05,
              -2.46092001009855e-05),
}


def log(party: Party, x: torch.Tensor, method: str = "poly4") -> torch.Tensor:
    """Fixed-point shares of ln(x).

    Steps:
      1. ``normalize`` (one bit decomposition of x shared by the 31 octaves' thresholds): one-hot octave bits.
      2. u = 4 x 2^-k - 3 in [-1, 1) (one Beaver + one truncation, ``reduced_products``).
      3. ``powers`` of u up to 4 ("poly4", 2 levels) or 8 ("poly8", 3 levels).
      4. sum_i c_i u^i at double scale plus the octave's c_0 + k ln 2 (a local lookup at scale 2^32), one
         truncation.
    Rounds: 12 + 2 + 4 + 1 = 19 ("poly4"), 12 + 2 + 6 + 1 = 21 ("poly8").
    Bytes sent per party per element: normalize 231 (n-1), plus 24 (n-1) for u, 24 (n-1) per power, 8 (n-1):
    total 335 (n-1) (poly4) and 431 (n-1) (poly8).
    Domain (default encoding): 0 < x < 2^15.  ln x is 0 at x = 1, so the bound is absolute.
    Error against ln of the encoded x: the bound we guarantee (tests assert it on 5,000 log-spaced points,
    hypothesis draws over the range and around 1, 2 and 3 parties) is |y - ln x| <= A with
      poly4: A = 1e-4 (float error of p: 6.07e-5); measured max 8.3e-5 (5.4 units);
      poly8: A = 3 units = 4.6e-5 (p: 2.9e-8); measured max 3.4e-5 (2.23 units).
    Hence relative error <= 1e-3 where |ln x| >= 0.1, i.e. outside [0.905, 1.105] (poly4; measured max 5.9e-4),
    and where |ln x| >= 0.05, outside [0.952, 1.051] (poly8; measured 3.2e-4).
    Outside the domain, raises nothing: x <= 0 gives exactly 0.
    """
    if method not in LOG_COEFFICIENTS:
        raise ValueError(f"log method must be one of {tuple(LOG_COEFFICIENTS)}, got {method!r}")
    if x.numel() == 0:
        return x.clone()
    normalization = normalize(party, x)
    exponent_term = normalization.table(lambda t: (t + 1) * math.log(2.0))
    return reduced_polynomial(party, x, normalization, LOG_COEFFICIENTS[method], exponent_term)
