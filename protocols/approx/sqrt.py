"""Square root and inverse square root of a shared fixed-point value: octave normalization, then a polynomial in
the reduced argument, with the octave's factor 2^(k/2) (or 2^(-k/2)) folded into the powers.

x = 2^k x' with x' in [0.5, 1) (one octave, not two: the odd octaves' sqrt(2) is handled by two gains, one
nonzero on even k with factor 1, one on odd k with factor sqrt(2), each a power of two; so x' stays in an
interval of ratio 2 and the polynomials are of degree 2 to 4 instead of 4 to 8 on [0.25, 1)).

Coefficients: minimax (Lawson's iteratively reweighted least squares, 3000 iterations, float64, numpy) of the
RELATIVE error of p(u) ~ sqrt(x') (or 1/sqrt(x')) on 200,001 evenly spaced x' in [0.5, 1], u = 4 x' - 3,
monomial basis in u.  Float64 max relative error of p alone: sqrt 6.45e-4 (degree 2), 8.4e-6 (degree 4);
1/sqrt 7.4e-5 (degree 4), 4.8e-8 (degree 8).
"""

from __future__ import annotations

import math

import torch

from protocols.approx.normalize import BinTable, Normalization, gained_polynomial, normalize
from protocols.party import Party

SQRT_COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "poly2": (0.866234338474651, 0.14589628554806672, -0.012775374358394823),
    "poly4": (0.8660224126204119, 0.14430452115573889, -0.011995760535331901, 0.0021349513230562757,
              -0.0004744861100566107),
}
INV_SQRT_COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "poly4": (1.1547126293983947, -0.19203084568198983, 0.047887282890759705, -0.014986587973220238,
              0.004491539760148801),
    "poly8": (1.1547005469071776, -0.19244959531248765, 0.048112092617167965, -0.01337108087874649,
              0.0039014297243396986, -0.001146631547257612, 0.00034790973898204974, -0.00013941502400287702,
              4.479217515212421e-05),
}

#: inv_sqrt ("poly4")'s guaranteed error, as (R, A): |y - 1/sqrt(x)| <= R / sqrt(x) + A units of 2^-frac_bits
#: (see ``inv_sqrt``); relative <= 1e-3 up to x = 2^10.
INV_SQRT_ERROR = (1.2e-4, 1.5)


def _parity_gains(normalization: Normalization, power: float) -> list[tuple[BinTable, float]]:
    """2^(power k) = g_even(k) (k even) or sqrt(2) g_odd(k) (k odd), g both powers of two (power = +-1/2)."""
    def even(t: int) -> float:
        k = t + 1
        return 2.0 ** (power * k) if k % 2 == 0 else 0.0

    def odd(t: int) -> float:
        k = t + 1
        return 2.0 ** (power * k - 0.5) if k % 2 else 0.0

    return [(normalization.table(even), 1.0), (normalization.table(odd), math.sqrt(2.0))]


def sqrt(party: Party, x: torch.Tensor, method: str = "poly4") -> torch.Tensor:
    """Fixed-point shares of sqrt(x).

    Steps:
      1. ``normalize`` (one bit decomposition of x shared by the 31 octaves' thresholds): one-hot octave bits.
      2. Level 1 (one Beaver + one truncation): u = 4 x 2^-k - 3 in [-1, 1) and g u for the two gains of
         2^(k/2) (``gained_polynomial``).
      3. Gained powers g u^i, i <= 2 in 1 more level ("poly2") or i <= 4 in 2 ("poly4").
      4. sum over gains of factor * sum_i c_i g u^i ~ 2^(k/2) sqrt(x') = sqrt(x), one truncation.
    Rounds: 12 + 2 + 2 + 1 = 17 ("poly2"), 12 + 2 + 4 + 1 = 19 ("poly4").
    Bytes sent per party per element: normalize 231 (n-1); level 1 56 (n-1) (x and 3 lookups opened,
    3 truncated); each later product 24 (n-1); final truncation 8 (n-1).  Total 343 (n-1) ("poly2"),
    463 (n-1) ("poly4").
    Domain (default encoding): 0 < x < 2^15.
    Error against sqrt of the encoded x: the bound we guarantee (tests assert it on 5,000 log-spaced points and
    on hypothesis draws, 2 and 3 parties) is |y - sqrt(x)| <= R sqrt(x) + A with
      poly2: R = 7e-4 (float error of p: 6.45e-4), A = 1.5 units; measured max of |y - sqrt x| - R sqrt x:
             0.83 units;
      poly4: R = 3e-5 (p: 8.4e-6), A = 1.5 units; measured 0.99 units.
    Hence relative error <= 1e-3 for x >= 2^-7 (poly2; measured max 7.4e-4) and x >= 2^-10 (poly4; measured
    4.0e-4).  Below, sqrt(x) < 2^-3.5 (or 2^-5) and the absolute error is at most 1.6 units.
    Outside the domain, raises nothing: x <= 0 gives exactly 0.
    """
    if method not in SQRT_COEFFICIENTS:
        raise ValueError(f"sqrt method must be one of {tuple(SQRT_COEFFICIENTS)}, got {method!r}")
    if x.numel() == 0:
        return x.clone()
    normalization = normalize(party, x)
    return gained_polynomial(party, x, normalization, _parity_gains(normalization, 0.5), SQRT_COEFFICIENTS[method])


def inv_sqrt(party: Party, x: torch.Tensor, method: str = "poly4") -> torch.Tensor:
    """Fixed-point shares of 1/sqrt(x).

    Steps: as ``sqrt``, with the gains of 2^(-k/2) and p(u) ~ 1/sqrt(x').
    Rounds: 12 + 2 + 4 + 1 = 19 ("poly4"), 12 + 2 + 6 + 1 = 21 ("poly8").
    Bytes sent per party per element: normalize 231 (n-1); level 1 72 (n-1) (x and 5 lookups opened: the gains'
    large entries are applied as exact integers; 3 truncated); each later product 24 (n-1); final 8 (n-1).
    Total 479 (n-1) ("poly4"), 719 (n-1) ("poly8").
    Domain (default encoding): 0 < x < 2^15 (1/sqrt(x) <= 256 is always representable).
    Error against 1/sqrt of the encoded x: the bound we guarantee (tests assert it as for ``sqrt``) is
    |y - 1/sqrt(x)| <= R/sqrt(x) + A with
      poly4: R = 1.2e-4 (float error of p: 7.4e-5), A = 1.5 units; measured max of the excess: 1.04 units;
      poly8: R = 3e-5 (p: 4.8e-8; the rest is rounding that scales with 1/sqrt(x)), A = 1.5 units; measured
             1.13 units.
    Hence relative error <= 1e-3 for x <= 2^10 (measured max 5.2e-4 poly4, 4.6e-4 poly8); beyond,
    1/sqrt(x) < 2^-5 and only the absolute bound holds (at most 1.6 units).
    Outside the domain, raises nothing: x <= 0 gives exactly 0.
    """
    if method not in INV_SQRT_COEFFICIENTS:
        raise ValueError(f"inv_sqrt method must be one of {tuple(INV_SQRT_COEFFICIENTS)}, got {method!r}")
    if x.numel() == 0:
        return x.clone()
    normalization = normalize(party, x)
    return gained_polynomial(party, x, normalization, _parity_gains(normalization, -0.5),
                             INV_SQRT_COEFFICIENTS[method])
