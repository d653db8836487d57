"""Reciprocal 1/x of a shared fixed-point value: octave normalization, then a polynomial in the reduced argument.

Coefficients: minimax (Lawson's iteratively reweighted least squares, 3000 iterations, float64, numpy) of the
RELATIVE error of p(u) ~ 1/x' on 200,001 evenly spaced x' in [0.5, 1], u = 4 x' - 3 in [-1, 1] (monomial
basis in u).  Float64 max relative error of p alone: 2.97e-4 (degree 4; the theoretical minimax 1/T_5(3) is
2.97e-4) and 2.6e-7 (degree 8).
"""

from __future__ import annotations

import torch

from protocols.approx.normalize import gained_polynomial, normalize
from protocols.party import Party

RECIPROCAL_COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "poly4": (1.3333333332932769, -0.4424621072683125, 0.14748736937750587, -0.05709184218721602,
              0.019030613795495123),
    "poly8": (1.333333333333302, -0.44444135234910087, 0.14814711745064998, -0.04942360033371745,
              0.01647453344001565, -0.005343091203372767, 0.0017810304081760564, -0.000791569635478149,
              0.00026385654173429005),
}
RECIPROCAL_METHODS = tuple(RECIPROCAL_COEFFICIENTS)


def reciprocal(party: Party, x: torch.Tensor, method: str = "poly4", *, signed: bool = False) -> torch.Tensor:
    """Fixed-point shares of 1/x.

    Let x = 2^k x' with x' in [0.5, 1) (k = t+1 for the octave [2^t, 2^(t+1))) and u = 4 x' - 3 in [-1, 1).
    Steps:
      1. ``normalize`` (one bit decomposition of x shared by the 31 octaves' thresholds; with ``signed``, of -x
         too, in the same calls): one-hot octave bits, so every function of k is a local lookup.
      2. Level 1 (one Beaver + one truncation): u = x * (4 2^-k) - 3 and g u = x * (4 2^-k g) - 3 g, with the
         gain g = 2^-k (negated for x < 0), capped at 2^13 = 2^(int_bits-2) for k <= -14.
      3. Gained powers g u^i (``gained_polynomial``), i <= 4 in 2 more levels ("poly4") or i <= 8 in 3 ("poly8").
      4. sum_i c_i g u^i ~ g / x' = 1/x at double scale, one truncation.
    Rounds: 12 + 2 + 4 + 1 = 19 ("poly4"), 12 + 2 + 6 + 1 = 21 ("poly8").
    Bytes sent per party per element: normalize 231 (n-1); level 1 48 (n-1) (x and 3 lookups opened,
    2 truncated); each later product 24 (n-1); final truncation 8 (n-1).  Total 383 (n-1) ("poly4"),
    527 (n-1) ("poly8"); ``signed`` doubles the normalization: 614 (n-1) ("poly4").
    Domain (default encoding, frac_bits 16, int_bits 15): 2^-14 <= x < 2^15 (-2^15 < x <= -2^-14 too with
    ``signed``).
    Error against 1/x of the encoded x: the bound we guarantee (tests assert it on 5,000 log-spaced points and
    on hypothesis draws, 2 and 3 parties) is |y - 1/x| <= R/|x| + A with
      poly4: R = 3.5e-4 (float error of p: 2.97e-4), A = 2 units (3.1e-5); measured max of |y - 1/x| - R/|x|:
             1.36 units;
      poly8: R = 1e-5 (p: 2.6e-7; the rest is rounding that scales with 1/x), A = 2 units; measured 1.36 units.
    Hence relative error <= 1e-3 for 2^-14 <= |x| <= 16 (poly4; measured max 4.6e-4) and <= 32 (poly8;
    measured 5.5e-4).  Beyond, 1e-3 of 1/x is a few units or less, and only the absolute bound holds there
    (|y - 1/x| <= 3.4 units for x >= 16).
    Outside the domain, raises nothing: x = 0 gives exactly 0; x < 0 gives exactly 0 unless ``signed``;
    0 < |x| < 2^-14 (1 to 3 units, where 1/x >= 21845 is at or past the range) gives 2^13/x' (x' = 0.5 or 0.75:
    16384 or 10923), within the same bound, with the sign of x.
    """
    if method not in RECIPROCAL_COEFFICIENTS:
        raise ValueError(f"reciprocal method must be one of {RECIPROCAL_METHODS}, got {method!r}")
    if x.numel() == 0:
        return x.clone()
    normalization = normalize(party, x, signed=signed)
    cap = 2.0 ** (party.encoding.int_bits - 2)
    gain = normalization.table(lambda t: min(2.0 ** -(t + 1), cap), lambda t: -min(2.0 ** -(t + 1), cap))
    return gained_polynomial(party, x, normalization, [(gain, 1.0)], RECIPROCAL_COEFFICIENTS[method])
