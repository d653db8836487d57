"""sigmoid and tanh of shared fixed-point values: four degree-4 pieces between two saturated constants.

Both use ``protocols.approx.exp.piecewise_polynomial`` with a bounded table (values below 2 in magnitude), so
the last level of powers needs no truncation: 13 rounds, against CrypTen's 58 for sigmoid.
"""

from __future__ import annotations

import torch

from protocols.approx.exp import PiecewisePolynomial, piecewise_polynomial
from protocols.party import Party

SIGMOID_METHODS = ("piecewise",)
TANH_METHODS = ("piecewise",)

# How both tables were made: breakpoints [-T, -c, 0, c, T] from a grid search (steps of 1/8 for sigmoid, 1/16
# for tanh) minimising the larger of the pieces' minimax error and the saturation error; on [0, c) and [c, T)
# the minimax degree-4 polynomial in u = (x - m) / h (scipy linprog on 600 points), its coefficients rounded
# to 2^-16 (c_3, c_4 to 2^-14) by trying floor - 1 .. floor + 2 of each for the smallest error on 4000 points;
# the negative pieces mirror the positive ones (sigmoid(-x) = 1 - sigmoid(x), tanh(-x) = -tanh(x)), exactly.
# Measured float64 error of the rounded pieces (no fixed point): sigmoid 2.95e-4, tanh 5.80e-4; saturation
# error: sigmoid(-8.25) = 2.61e-4, 1 - tanh(4.125) = 5.22e-4.
SIGMOID_TABLE = PiecewisePolynomial(
    breaks=(-8.25, -2.875, 0.0, 2.875, 8.25),
    centers=(-5.5625, -5.5625, -1.4375, 1.4375, 5.5625, 5.5625),
    coefficients=(
        (0, 0, 0, 0, 0),
        (257, 865, 1807, 3764, 3364),
        (12582, 40907, 49777, -1064, -52560),
        (52954, 40907, -49777, -1064, 52560),
        (65279, 865, -1807, 3764, -3364),
        (65536, 0, 0, 0, 0),
    ),
    half_width=4,
    bounded=True,
)
TANH_TABLE = PiecewisePolynomial(
    breaks=(-4.125, -1.4375, 0.0, 1.4375, 4.125),
    centers=(-2.78125, -2.78125, -0.71875, 0.71875, 2.78125, 2.78125),
    coefficients=(
        (-65536, 0, 0, 0, 0),
        (-65023, 1731, 3619, 7524, 6724),
        (-40373, 81816, 99559, -2148, -105112),
        (40373, 81816, -99559, -2148, 105112),
        (65023, 1731, -3619, 7524, -6724),
        (65536, 0, 0, 0, 0),
    ),
    half_width=2,
    bounded=True,
)


def sigmoid(party: Party, x: torch.Tensor, method: str = "piecewise") -> torch.Tensor:
    """Shares of 1 / (1 + e^-x) for shared fixed-point x (int64 shares in, int64 shares out, same shape).

    Methods: ``"piecewise"`` (the only one): ``piecewise_polynomial`` with ``SIGMOID_TABLE``.
    Steps:
      1. One batched ``ltz`` of x against -8.25, -2.875, 0, 2.875, 8.25.
      2. Local: the piece's centre m (-5.5625, -1.4375, 1.4375 or 5.5625) and coefficients from the bits.
      3. u = (x - m) / 4 and u^2 from one Beaver product and one truncation; u^3, u^4 from one more Beaver
         product, untruncated.
      4. One Beaver product of the coefficients with the powers, one truncation.
    Rounds: 13 (dealer truncation; 11 with two parties' local truncation).  Bytes per party: 298.5 (n-1) per element
    (5 comparisons in one ltz, 32.5 each, then 136).
    Domain: every fixed-point input (|x| < 2^15).  Max absolute error (16 fractional bits, compared with
    float64 sigmoid of the float input): <= 3.2e-4 guaranteed (the pieces' float error plus the worst case of
    every rounding), measured 3.1e-4 (20,000 evenly spaced points of [-10, 10], 2 and 3 parties).
    Edges: below -8.25 the result is exactly 0, at and above 8.25 exactly 1 (error < 2.62e-4 there); every
    result lies in [0, 1] (the pieces stay 1.4e-4 inside it).  Relative error is not bounded for x << 0.
    Needs frac_bits >= 16 and int_bits >= 15 (ValueError otherwise).
    """
    if method not in SIGMOID_METHODS:
        raise ValueError(f"sigmoid method must be one of {SIGMOID_METHODS}, got {method!r}")
    return piecewise_polynomial(party, x, SIGMOID_TABLE)


def tanh(party: Party, x: torch.Tensor, method: str = "piecewise") -> torch.Tensor:
    """Shares of tanh(x) for shared fixed-point x (int64 shares in, int64 shares out, same shape).

    Methods: ``"piecewise"`` (the only one): ``piecewise_polynomial`` with ``TANH_TABLE`` (fitted to tanh
    directly; 2 sigmoid(2x) - 1 would double sigmoid's error).
    Steps:
      1. One batched ``ltz`` of x against -4.125, -1.4375, 0, 1.4375, 4.125.
      2. Local: the piece's centre m (-2.78125, -0.71875, 0.71875 or 2.78125) and coefficients from the bits.
      3. u = (x - m) / 2 and u^2 from one Beaver product and one truncation; u^3, u^4 from one more Beaver
         product, untruncated.
      4. One Beaver product of the coefficients with the powers, one truncation.
    Rounds: 13 (dealer truncation; 11 with two parties' local truncation).  Bytes per party: 298.5 (n-1) per element.
    Domain: every fixed-point input (|x| < 2^15).  Max absolute error (16 fractional bits, compared with
    float64 tanh of the float input): <= 6.1e-4 guaranteed, measured 5.9e-4 (20,000 evenly spaced points of
    [-6, 6], 2 and 3 parties).
    Edges: below -4.125 the result is exactly -1, at and above 4.125 exactly 1 (error < 5.23e-4 there); every
    result lies in [-1, 1] (the pieces stay 2.8e-4 inside it).
    Needs frac_bits >= 16 and int_bits >= 15 (ValueError otherwise).
    """
    if method not in TANH_METHODS:
        raise ValueError(f"tanh method must be one of {TANH_METHODS}, got {method!r}")
    return piecewise_polynomial(party, x, TANH_TABLE)
