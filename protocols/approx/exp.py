"""exp of shared fixed-point values, and the piecewise-polynomial evaluator it shares with sigmoid and tanh.

A piecewise polynomial here is a table of K public breakpoints a_1 < ... < a_K cutting the line into K + 1
regions, each with its own centre m_r and degree-4 polynomial in u = (x - m_r) / h.  One batched exact
comparison ([x < a_k] for every k, ``protocols.additive.compare.ltz``) tells which region x is in; the region's centre
and coefficients are then *linear* in those comparison bits, so they cost no communication, and the
polynomial is evaluated with secret coefficients: the powers of u (Beaver products), then one batched Beaver
product of each power with its coefficient, and one truncation.
Outer regions carry constant polynomials (all coefficients but c_0 zero): whatever u is there (out of range,
even wrapped around the ring), it is multiplied by an exact shared zero and the result is that constant,
exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fixedpoint import FixedPoint, ring_matmul
from protocols.additive.arithmetic import mul
from protocols.additive.compare import ltz
from protocols.additive.sharing import add_public
from protocols.additive.truncation import truncate
from protocols.approx.poly import powers
from protocols.party import Party

#: The tables' coefficients are integers in units of 2^-TABLE_FRAC_BITS.
TABLE_FRAC_BITS = 16
#: Degree of every piece (two levels of powers).
DEGREE = 4
#: In a ``bounded`` table the coefficients of u^3 and u^4 are multiples of 2^-BOUNDED_HIGH_FRAC_BITS.
BOUNDED_HIGH_FRAC_BITS = 14

EXP_METHODS = ("piecewise",)


@dataclass(frozen=True)
class PiecewisePolynomial:
    """A function as K + 1 polynomial pieces (see the module docstring).

    ``breaks``: the K increasing breakpoints, exact multiples of 2^-16; region r is [a_r, a_{r+1}) with
    a_0 = -inf and a_{K+1} = +inf.  ``centers``: K + 1 centres m_r, multiples of 2^-16.  ``coefficients``:
    K + 1 rows (c_0, ..., c_4), integers in units of 2^-16, of the polynomial in u = (x - m_r) / half_width.
    ``half_width``: h, a power of two (1 for the ``bounded=False`` scheme).  ``bounded``: every value of the
    function (and of each piece) has magnitude below 2; then the last level of powers is left untruncated
    (one round fewer) and c_3, c_4 must be multiples of 4 (units of 2^-14).
    """

    breaks: tuple[float, ...]
    centers: tuple[float, ...]
    coefficients: tuple[tuple[int, ...], ...]
    half_width: int
    bounded: bool

    def __post_init__(self) -> None:
        regions = len(self.breaks) + 1
        if len(self.centers) != regions or len(self.coefficients) != regions:
            raise ValueError("a piecewise table needs one centre and one coefficient row per region")
        if any(len(row) != DEGREE + 1 for row in self.coefficients):
            raise ValueError(f"every piece must have degree {DEGREE}")
        if any(a >= b for a, b in zip(self.breaks, self.breaks[1:])):
            raise ValueError("breakpoints must increase")
        if self.half_width < 1 or self.half_width & (self.half_width - 1):
            raise ValueError("half_width must be a power of two")
        if not self.bounded and self.half_width != 1:
            raise ValueError("the unbounded scheme evaluates powers of x - m directly (half_width 1)")
        quantum = 1 << (TABLE_FRAC_BITS - BOUNDED_HIGH_FRAC_BITS)
        if self.bounded and any(c % quantum for row in self.coefficients for c in row[3:]):
            raise ValueError("a bounded table's u^3 and u^4 coefficients must be multiples of 2^-14")


def check_encoding(encoding: FixedPoint) -> None:
    """The tables are made for 16 fractional bits and values up to 2^15; more of either is fine, less is not."""
    if encoding.frac_bits < TABLE_FRAC_BITS or encoding.int_bits < 15:
        raise ValueError(
            f"exp, sigmoid and tanh need frac_bits >= {TABLE_FRAC_BITS} and int_bits >= 15 (their tables and "
            f"error bounds are made for that); this session has frac_bits={encoding.frac_bits}, "
            f"int_bits={encoding.int_bits}"
        )


def piecewise_polynomial(party: Party, x: torch.Tensor, table: PiecewisePolynomial) -> torch.Tensor:
    """Shares of the piecewise polynomial ``table`` at x (fixed point in, fixed point out, same shape).

    Steps:
      1. One ``ltz`` call on the K-fold batch x - a_k: unscaled shares of b_k = [x < a_k].
      2. Local: with D_k = row_k - row_{k-1} (centre and coefficients of the regions either side of a_k), the
         region's values are row_K - sum_k b_k D_k (one int64 ring matmul): shared coefficients S_0..S_4 and
         the shared centre m, so t = x - m.
      3. Powers of u = t / h.  Unbounded scheme (h = 1): ``powers(t, 4)``, every level truncated.  Bounded
         scheme: t*t (Beaver), then ONE truncation of [t * 2^f h, t*t] by 2^f h^2 gives u and u^2; then
         u^2 * [u, u^2] (Beaver) left at double scale.
      4. One Beaver product S_i * u^i for i = 1..4 (no truncation); add S_0 at the same scale (for a bounded
         table S_3 and S_4 are encoded with 2^-14 resolution and the low terms lifted, so that everything is
         at scale 2^(2f+14) and below 2^(int_bits+2f)); truncate once to scale 2^f.
    Rounds (dealer truncation): 8 + 4 + 2 = 14, bounded 8 + 3 + 2 = 13;
    local truncation (two parties): 11.
    Bytes sent per party per element: (32.5 K + 144) (n-1), bounded (32.5 K + 136) (n-1) (the K comparisons are
    one ``ltz`` call: ``ltz_bytes(K k)`` for k elements, exactly).
    Error: |value - table polynomial| < 1 unit (final truncation) + sum_i |c_i| err(u^i) in units, where
    err(u) < 1 (0 for h = 1), err(u^2) < 1, err(u^3) <= |u| err(u^2) + u^2 err(u) + 1 and
    err(u^4) <= 2 u^2 err(u^2) + 1 (the +1 only where that level is truncated): below 3 units for |u| <= 1.
    Constant regions are exact (a truncation of an exact multiple of its divisor is exact).
    """
    check_encoding(party.encoding)
    if x.dtype != torch.int64:
        raise TypeError(f"expected int64 shares, got {x.dtype}")
    if x.numel() == 0:
        return x.clone()
    frac_bits = party.encoding.frac_bits
    count = len(table.breaks)
    ones = (1,) * x.dim()
    breaks = torch.tensor([_encode_exact(b, frac_bits) for b in table.breaks], dtype=torch.int64, device=x.device)
    below = ltz(party, add_public(party, x.unsqueeze(0), -breaks.reshape(count, *ones)))

    rows = torch.tensor([_region_row(table, r, party.encoding) for r in range(count + 1)], dtype=torch.int64,
                        device=x.device)
    steps = (rows[1:] - rows[:-1]).T.contiguous()
    selected = -ring_matmul(steps, below.reshape(count, -1)).reshape(rows.shape[1], *x.shape)
    if party.rank == 0:
        selected = selected + rows[-1].reshape(-1, *ones)
    centre, coefficients = selected[0], selected[1:]
    offset = x - centre

    if table.bounded:
        return _bounded_evaluation(party, offset, coefficients, table.half_width)
    terms = torch.stack(powers(party, offset, DEGREE))
    products = mul(party, coefficients[1:], terms, rescale=False).sum(0)
    return truncate(party, products + coefficients[0] * party.encoding.scale)


def _bounded_evaluation(party: Party, offset: torch.Tensor, coefficients: torch.Tensor, half_width: int
                        ) -> torch.Tensor:
    """Steps 3-4 of ``piecewise_polynomial`` for a bounded table (13 rounds in all, see there)."""
    encoding = party.encoding
    scale = encoding.scale
    high_bits = _bounded_high_bits(encoding)
    square = mul(party, offset, offset, rescale=False)
    scaled = truncate(party, torch.stack([offset * (scale * half_width), square]), scale * half_width**2)
    u, u2 = scaled[0], scaled[1]
    u3, u4 = mul(party, torch.stack([u2, u2]), scaled, rescale=False)
    products = mul(party, coefficients[1:], torch.stack([u, u2, u3, u4]), rescale=False)
    total = (products[0] + products[1]) * (1 << high_bits) + products[2] + products[3]
    total = total + coefficients[0] * (1 << (encoding.frac_bits + high_bits))
    return truncate(party, total, 1 << (encoding.frac_bits + high_bits))


def _bounded_high_bits(encoding: FixedPoint) -> int:
    """Fractional bits of c_3, c_4 in a bounded table: u^3, u^4 at scale 2^2f times these stay below 2^(int+2f)
    for values below 2 in magnitude."""
    return min(encoding.frac_bits, encoding.int_bits - 1)


def _region_row(table: PiecewisePolynomial, region: int, encoding: FixedPoint) -> list[int]:
    """[centre, c_0, ..., c_4] of one region, encoded at the scales step 4 uses."""
    row = [_encode_exact(table.centers[region], encoding.frac_bits)]
    for power, units in enumerate(table.coefficients[region]):
        bits = _bounded_high_bits(encoding) if table.bounded and power >= 3 else encoding.frac_bits
        row.append(_rescale_units(units, bits))
    return row


def _rescale_units(units: int, bits: int) -> int:
    """An integer in units of 2^-16 as an integer in units of 2^-bits (exact: the tables guarantee it)."""
    if bits >= TABLE_FRAC_BITS:
        return units << (bits - TABLE_FRAC_BITS)
    shift = TABLE_FRAC_BITS - bits
    if units % (1 << shift):
        raise ValueError(f"coefficient {units} * 2^-16 is not a multiple of 2^-{bits}")
    return units >> shift


def _encode_exact(value: float, frac_bits: int) -> int:
    scaled = value * 2.0**frac_bits
    if scaled != math.floor(scaled):
        raise ValueError(f"table value {value!r} is not a multiple of 2^-{frac_bits}")
    return int(scaled)


# exp on 10 pieces (11 breakpoints).  Each piece is the minimax degree-4 polynomial of exp(m + t) for the weight
# 1 / max(8.5e-4 e^x, 1.9 * 2^-16) (scipy linprog on 600 points), then every coefficient rounded to 2^-16 by
# trying floor - 1 .. floor + 2 of each (256 choices) for the smallest weighted error on 2000 points; the
# pieces were grown greedily from the top, each as wide (in steps of 1/16) as the fixed-point error bound of
# ``piecewise_polynomial`` allowed.  Measured float64 error of these rounded polynomials (no fixed point):
# relative <= 7.9e-4 on [-3.5, 10.3967), absolute <= 0.65 units (1.0e-5) below -3.5.
#: Last breakpoint: ln(2^15) - 2^-11, rounded down to 2^-16; at and above it exp saturates.
EXP_TOP = 681359 / 65536
#: The value exp saturates to: the largest below 2^15 at 16 fractional bits.
EXP_SATURATION_UNITS = (1 << 31) - 1
EXP_TABLE = PiecewisePolynomial(
    breaks=(-11.5, -9.4375, -6.6875, -4.3125, -2.5, -0.4375, 1.6875, 3.875, 6.0625, 8.25, EXP_TOP),
    centers=(-10.46875, -10.46875, -8.0625, -5.5, -3.40625, -1.46875, 0.625, 2.78125, 4.96875, 7.15625,
             611015 / 65536, 611015 / 65536),
    coefficients=(
        (0, 0, 0, 0, 0),
        (2, 2, 1, 0, 0),
        (21, 20, 10, 4, 1),
        (268, 266, 132, 49, 13),
        (2173, 2170, 1090, 381, 90),
        (15081, 15053, 7594, 2672, 600),
        (122373, 122126, 61670, 21753, 4865),
        (1057044, 1054730, 533196, 188564, 41923),
        (9421332, 9400711, 4752322, 1680645, 373655),
        (83971416, 83787627, 42356992, 14979422, 3330345),
        (733360648, 731837203, 369686912, 130521083, 29137709),
        (EXP_SATURATION_UNITS, 0, 0, 0, 0),
    ),
    half_width=1,
    bounded=False,
)
#: Documented domain of the relative error bound: [EXP_DOMAIN_LOW, ln(2^15)).
EXP_DOMAIN_LOW = -3.5


def exp(party: Party, x: torch.Tensor, method: str = "piecewise") -> torch.Tensor:
    """Shares of e^x for shared fixed-point x (int64 shares in, int64 shares out, same shape).

    Methods: ``"piecewise"`` (the only one): 10 degree-4 pieces on [-11.5, ln(2^15) - 2^-11), constants
    outside (``piecewise_polynomial`` with ``EXP_TABLE``).
    Steps:
      1. One batched ``ltz`` of x against the 11 breakpoints -11.5, -9.4375, ..., 8.25, ln(2^15) - 2^-11.
      2. Local: the piece's centre m and coefficients S_0..S_4 from the comparison bits; t = x - m (|t| <= 1.1
         on the pieces above -4.3125, <= 1.375 below).
      3. ``powers(t, 4)``: t^2, then t^3 and t^4 (two Beaver products and two truncations).
      4. One Beaver product S_i t^i (i = 1..4), plus S_0, one truncation.
    Rounds: 14 (dealer truncation; 11 with two parties' local truncation).  Bytes per party: 501.5 (n-1) per element
    (11 comparisons at 32.5, powers 72, products 64, truncation 8).
    Domain and error (16 fractional bits, int_bits 15; x a float input, compared with float64 e^x; measured
    on 20,000 evenly spaced points of [-12, 10.5], 2 and 3 parties):
      * [-3.5, ln(2^15) = 10.3972): relative error <= 8.4e-4 guaranteed (the pieces' float error plus the worst
        case of every rounding), measured 8.0e-4.  Results below 0.03 could not do much better: one unit
        (2^-16) is already 5e-4 of 0.03.
      * [-11.5, -3.5): absolute error <= 1.7 units (2.6e-5), measured 1.53 units; below -11.5 the result is
        exactly 0 (error e^x < 0.67 units).  Never negative: every piece stays above zero by more than its
        worst-case rounding.  On all of (-inf, 0] the absolute error is <= 5.6e-4 (at 0; measured 5.2e-4).
      * at and above ln(2^15) - 2^-11 = 10.39671: exactly 2^15 - 2^-16 (``EXP_SATURATION_UNITS``), the largest
        representable value; its relative error is < 5e-4 up to ln(2^15), beyond which e^x is out of the
        fixed-point range.  Nothing wraps around: no piece exceeds that value either.
    Needs frac_bits >= 16 and int_bits >= 15 (ValueError otherwise); with more fractional bits the errors
    only shrink, and the saturation value stays 2^15 - 2^-16.
    """
    if method not in EXP_METHODS:
        raise ValueError(f"exp method must be one of {EXP_METHODS}, got {method!r}")
    return piecewise_polynomial(party, x, EXP_TABLE)
