"""Octave normalization of a shared fixed-point value, and polynomials evaluated on the normalized value.

For x > 0 the octave t with 2^t <= x < 2^(t+1) is found by comparing x with every power of two of the
representable range (t = -frac_bits .. int_bits-1) at once, from ONE bit decomposition of x: c_t = [x >= 2^t]
is the OR of x's bits from t up.  The bits c_t are monotone in t, so d_t = c_t - c_(t+1) (= c_t XOR c_(t+1))
is a one-hot encoding of the octave, and every public function of the octave (the scaling
2^-(t+1) that brings x into [0.5, 1), the exponent t+1, sqrt(2^(t+1)), ...) is a LOCAL linear combination of
the d_t with public integer coefficients (``Normalization.lookup``).  For x <= 0 every d_t is 0, so every
lookup gives exactly 0; a signed normalization also finds the octave of -x for x < 0, in the same call.

``reduced_argument`` and ``gained_polynomial`` evaluate g(t) * p(u) with u = 4 x 2^-(t+1) - 3 in [-1, 1)
(x' = x 2^-(t+1) in [0.5, 1)) and a per-octave gain g(t), folding the gain into the powers so that no
separate multiplication by g is needed (see ``gained_polynomial``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fixedpoint import logical_shift_right
from protocols.additive.arithmetic import mul
from protocols.additive.bits import bit_decompose, low_mask, or_from_top
from protocols.additive.compare import xor_bit_to_additive
from protocols.additive.truncation import truncate
from protocols.approx.poly import powers
from protocols.party import Party

#: The reduced argument is u = U_SLOPE * x' - U_OFFSET for x' in [0.5, 1): u in [-1, 1), exactly (powers of two).
U_SLOPE = 4
U_OFFSET = 3


@dataclass(frozen=True)
class BinTable:
    """A public real value per octave: ``positive[i]`` for x in [2^t_i, 2^(t_i+1)), ``negative[i]`` for -x
    there (used by signed normalizations only).  Octaves are the ``exponents`` of the Normalization."""

    positive: tuple[float, ...]
    negative: tuple[float, ...]

    def __mul__(self, other: BinTable) -> BinTable:
        return BinTable(tuple(a * b for a, b in zip(self.positive, other.positive)),
                        tuple(a * b for a, b in zip(self.negative, other.negative)))

    def scaled(self, factor: float) -> BinTable:
        return BinTable(tuple(factor * a for a in self.positive), tuple(factor * a for a in self.negative))


@dataclass(frozen=True)
class Normalization:
    """One-hot shares of the octave of x (unscaled 0/1 ring elements, shape (len(exponents), *x.shape)).

    ``positive[i]`` is [2^t <= x < 2^(t+1)] for t = exponents[i]; ``negative[i]`` is [2^t <= -x < 2^(t+1)]
    (None unless signed).  At most one of all these bits is 1; none is for x = 0, nor for x < 0 unsigned.
    """

    exponents: tuple[int, ...]
    positive: torch.Tensor
    negative: torch.Tensor | None

    @property
    def signed(self) -> bool:
        return self.negative is not None

    def table(self, positive: Callable[[int], float], negative: Callable[[int], float] | None = None
              ) -> BinTable:
        """Tabulate a function of the octave's exponent t (``negative`` for x < 0; default 0 there)."""
        negative = negative if negative is not None else (lambda t: 0.0)
        return BinTable(tuple(float(positive(t)) for t in self.exponents),
                        tuple(float(negative(t)) for t in self.exponents))

    def lookup(self, table: BinTable, scale: int) -> torch.Tensor:
        """Shares of round(table[octave of x] * scale), and 0 where x is in no octave.  Local (no rounds): a sum
        of the one-hot bits times public integers, exact in the ring."""
        result = _weighted_sum(self.positive, [round(v * scale) for v in table.positive])
        if self.negative is not None:
            result = result + _weighted_sum(self.negative, [round(v * scale) for v in table.negative])
        return result

    def scale(self, encoding_scale: int) -> torch.Tensor:
        """Fixed-point shares of s = 2^-(t+1) (negated for x < 0 when signed), so that x * s lies in [0.5, 1).
        Exact: every s is a power of two between 2^-int_bits and 2^(frac_bits-1).  The largest (2^15 for
        x = 2^-16 by default) reaches the magnitude bound: use s only as a factor of x (|x s| < 1), never
        alone in a product that is truncated."""
        return self.lookup(self.table(lambda t: 2.0 ** -(t + 1), lambda t: -(2.0 ** -(t + 1))), encoding_scale)

    def exponent(self) -> torch.Tensor:
        """Unscaled integer shares of k = t+1, so that x = 2^k x' with x' in [0.5, 1) (0 for x = 0)."""
        return self.lookup(self.table(lambda t: t + 1, lambda t: t + 1), 1)


def _weighted_sum(bits: torch.Tensor, weights: Sequence[int]) -> torch.Tensor:
    column = torch.tensor(weights, dtype=torch.int64, device=bits.device).reshape(-1, *([1] * (bits.dim() - 1)))
    return (bits * column).sum(0)


def normalize(party: Party, x: torch.Tensor, *, signed: bool = False) -> Normalization:
    """Shares of the octave of x (see ``Normalization``), from one bit decomposition shared by every threshold.

    Let T = int_bits + frac_bits (31 by default): fixed-point values are |x| < 2^T as ring elements, so the low
    T + 1 bits of x hold its value bits 0..T-1 and, in bit T, its sign.
    Steps:
      1. ``bit_decompose`` x (and -x if ``signed``, in the same calls) into XOR shares of its low T + 1 bits.
      2. ``or_from_top``: S_t = OR of bits t..T, for every t at once.  For 0 <= x < 2^T, S_t = [x >= 2^t];
         for x < 0 the sign bit T makes every S_t 1.
      3. Local: the octave bits d_t = S_t ^ S_(t+1) for t = 0..T-1 (raw t, the exponent t - frac_bits): one-hot
         on the octave of x > 0, and all 0 for x = 0 and for x < 0 (their one bit is d_T, the sign, dropped).
      4. ``xor_bit_to_additive`` on all T bits (of x and -x) at once: unscaled 0/1 additive shares.
    Rounds: 1 + 5 (borrows) + 5 (OR from the top) + 1 (conversion) = 12, for T = 31 (signed or not).
    Bytes sent per party per element: (120 + 80 + 31) (n-1) = 231 (n-1); twice that, 462 (n-1), if ``signed``.
    Dealer: (80 + 40 + 31 * 8) = 368 bytes per element to the last party (twice that if ``signed``); the random
    bits of step 4 are most of it, and most of the time.
    Error: none: the octave is exact for every fixed-point x (|x| < 2^T).
    Outside x > 0: every bit is 0 for x = 0 (and for x < 0 unless ``signed``), so every lookup is 0.  A ring
    element outside the fixed-point range gets the octave of its low T + 1 bits read as a signed number.
    """
    encoding = party.encoding
    exponents = tuple(range(-encoding.frac_bits, encoding.int_bits))
    value_bits = len(exponents)
    values = torch.stack([x, -x]) if signed else x.unsqueeze(0)
    words = bit_decompose(party, values, value_bits + 1)
    at_least = or_from_top(party, words, value_bits + 1)
    one_hot = (at_least ^ logical_shift_right(at_least, 1)) & low_mask(value_bits)
    positions = torch.arange(value_bits, device=x.device).reshape(-1, *([1] * x.dim()))
    octave_bits = xor_bit_to_additive(party, (one_hot.unsqueeze(1) >> positions) & 1)
    return Normalization(exponents, octave_bits[0], octave_bits[1] if signed else None)


def reduced_products(party: Party, x: torch.Tensor, normalization: Normalization,
                     tables: Sequence[BinTable]) -> list[torch.Tensor]:
    """Fixed-point shares of x * table[octave of x] for each table (powers of two in practice), exact to one
    unit, in one Beaver round and one truncation round, for every table together.

    The values span many octaves (2^-28 .. 2^30 for 4 x 2^-2(t+1)), too many for one fixed-point scale: an entry
    that is an integer and whose product x * v would not fit under a large scale is applied as an integer (an
    exact product, already at scale 2^frac_bits, no truncation); the others are encoded at a common scale 2^K,
    K as large as the product bound allows (|x v| 2^(frac_bits+K) < 2^product_bits, with x < 2^(t+1) in its
    octave), and truncated by 2^K.  Raises ValueError if an entry fits neither way (not for this module's tables).
    Steps: 1. split each table; 2. one ``mul`` of x (broadcast) by all lookups, unscaled; 3. one truncation of
    the scaled ones; 4. add the parts of each table.
    Rounds: 2.  Bytes per party per element: 8 (n-1) (1 + L) for the L lookups, plus 8 (n-1) per scaled one.
    """
    encoding = party.encoding
    frac_bits, product_bits = encoding.frac_bits, encoding.product_bits
    entries = [(v, t) for table in tables for side in (table.positive, table.negative)
               for v, t in zip(side, normalization.exponents) if v != 0.0]
    fractional = [(v, t) for v, t in entries if v != round(v)]
    if not fractional:
        fractional = entries
    scale_bits = min(math.floor(product_bits - frac_bits - math.log2(abs(v)) - (t + 1)) for v, t in fractional)

    def fits_scaled(v: float, t: int) -> bool:
        return abs(v) * 2.0 ** (t + 1 + frac_bits + scale_bits) <= 2.0 ** product_bits

    operands: list[torch.Tensor] = []
    scaled_flags: list[bool] = []
    owners: list[int] = []
    for index, table in enumerate(tables):
        scaled_part = _where(table, normalization.exponents, fits_scaled)
        integer_part = _where(table, normalization.exponents, lambda v, t: not fits_scaled(v, t))
        if any(v != round(v) for v in integer_part.positive + integer_part.negative):
            raise ValueError("a table entry is too small for the product bound yet not an integer")
        parts = [(scaled_part, 1 << scale_bits, True)]
        if any(integer_part.positive + integer_part.negative):
            parts.append((integer_part, 1, False))
        for table_part, scale, scaled in parts:
            operands.append(normalization.lookup(table_part, scale))
            scaled_flags.append(scaled)
            owners.append(index)
    products = mul(party, x.unsqueeze(0), torch.stack(operands), rescale=False)
    scaled_rows = [i for i, flag in enumerate(scaled_flags) if flag]
    truncated = truncate(party, products[scaled_rows], 1 << scale_bits)
    results = [torch.zeros_like(x) for _ in tables]
    for row, (owner, flag) in enumerate(zip(owners, scaled_flags)):
        part = truncated[scaled_rows.index(row)] if flag else products[row]
        results[owner] = results[owner] + part
    return results


def _where(table: BinTable, exponents: Sequence[int], keep: Callable[[float, int], bool]) -> BinTable:
    """The entries of ``table`` that ``keep(value, exponent)``, 0 elsewhere."""
    return BinTable(*(tuple(v if keep(v, t) else 0.0 for v, t in zip(side, exponents))
                      for side in (table.positive, table.negative)))


def reduced_table(normalization: Normalization) -> BinTable:
    """U_SLOPE * 2^-(t+1) per octave (negated for -x), so that x * table - U_OFFSET = u in [-1, 1)."""
    return normalization.table(lambda t: U_SLOPE * 2.0 ** -(t + 1), lambda t: -U_SLOPE * 2.0 ** -(t + 1))


def constant_table(normalization: Normalization, value: float) -> BinTable:
    """``value`` in every octave (0 where x is in none)."""
    return normalization.table(lambda t: value, lambda t: value)


def gained_polynomial(party: Party, x: torch.Tensor, normalization: Normalization,
                      gains: Sequence[tuple[BinTable, float]], coefficients: Sequence[float]) -> torch.Tensor:
    """Shares of sum_j factor_j * g_j(t) * p(u), p(u) = sum_i c_i u^i of degree D in {2, 4, 8}, where
    u = 4 x 2^-(t+1) - 3 in [-1, 1), for public gains g_j (powers of two, per octave) with factors.

    The gains ride along with the powers instead of multiplying the result (two rounds saved):
      1. Level 1 (``reduced_products``): u = x * (4 2^-(t+1)) - 3 and G_j u = x * (4 2^-(t+1) g_j) - 3 g_j,
         all in one Beaver + one truncation.
      2. Level l >= 2: one batched ``mul`` extends the gained powers G_j u^i with the plain powers known so far
         (G_j u^(a+i) = G_j u^a * u^i), and the plain powers u^i as far as later levels need them.  After levels
         1..L the gained powers reach degree 2^(L-1): D = 2, 4, 8 take L = 2, 3, 4.
      3. sum_j [ factor_j c_0 g_j (a lookup at scale 2^(2 frac_bits)) + sum_i (factor_j c_i) G_j u^i ] at
         double scale, then ONE truncation.
    Rounds: 2 L + 1 = 5, 7, 9 for D = 2, 4, 8.  Bytes per party per element (J gains, Beaver + truncation):
    level 1 as ``reduced_products``; each later level 8 (n-1) (operands + products) + 8 (n-1) products;
    final 8 (n-1).
    Error: each product adds < 1 unit (2^-frac_bits) to its factors' errors; |u| <= 1, so a gained power's
    error is about (i+1) g_j + i units; the result adds < 1 unit.  For x <= 0 (or x < 0 unsigned) every gained
    term and lookup is exactly 0, so the result is exactly 0.
    """
    degree = len(coefficients) - 1
    if degree not in (2, 4, 8):
        raise ValueError(f"gained polynomials have degree 2, 4 or 8, got {degree}")
    encoding = party.encoding
    reduced = reduced_table(normalization)
    level_one = reduced_products(party, x, normalization, [reduced] + [reduced * g for g, _ in gains])
    u = level_one[0] - normalization.lookup(constant_table(normalization, U_OFFSET), encoding.scale)
    gained = [[product - normalization.lookup(g.scaled(U_OFFSET), encoding.scale)]
              for product, (g, _) in zip(level_one[1:], gains)]
    plain = [u]
    while len(gained[0]) < degree:
        top = len(gained[0])
        step = min(len(plain), degree - top)
        remaining = degree - top - step
        extend = min(len(plain), max(0, min(remaining, 2 * len(plain)) - len(plain)))
        lefts = [terms[-1] for terms in gained for _ in range(step)] + [plain[-1]] * extend
        rights = [plain[i] for _ in gained for i in range(step)] + plain[:extend]
        products = mul(party, torch.stack(lefts), torch.stack(rights)).unbind(0)
        for j, terms in enumerate(gained):
            terms.extend(products[j * step:(j + 1) * step])
        plain.extend(products[len(gained) * step:])
    total = torch.zeros_like(x)
    for (g, factor), terms in zip(gains, gained):
        total = total + normalization.lookup(g.scaled(factor * coefficients[0]), encoding.scale ** 2)
        for coefficient, term in zip(coefficients[1:], terms):
            total = total + term * round(factor * coefficient * encoding.scale)
    return truncate(party, total)


def reduced_polynomial(party: Party, x: torch.Tensor, normalization: Normalization,
                       coefficients: Sequence[float], constant: BinTable) -> torch.Tensor:
    """Shares of p(u) + constant(t), p(u) = sum_i c_i u^i, u = 4 x 2^-(t+1) - 3 in [-1, 1) (u = 0 and the
    result exactly 0 where x is in no octave; c_0 is added per octave with the constant).

    Steps: 1. u (``reduced_products``, 2 rounds); 2. ``powers`` of u (2 ceil(log2 D) rounds); 3. the sum
    at double scale, the constant looked up at scale 2^(2 frac_bits), one truncation (1 round).
    Rounds: 3 + 2 ceil(log2 D).  Bytes per party per element: 24 (n-1) + 24 (n-1) per power + 8 (n-1).
    Error: sum_i |c_i| i units from the powers, plus < 1 unit.
    """
    degree = len(coefficients) - 1
    encoding = party.encoding
    (product,) = reduced_products(party, x, normalization, [reduced_table(normalization)])
    u = product - normalization.lookup(constant_table(normalization, U_OFFSET), encoding.scale)
    terms = powers(party, u, degree)
    shifted = BinTable(tuple(v + coefficients[0] for v in constant.positive),
                       tuple(v + coefficients[0] for v in constant.negative))
    total = normalization.lookup(shifted, encoding.scale ** 2)
    for coefficient, term in zip(coefficients[1:], terms):
        total = total + term * round(coefficient * encoding.scale)
    return truncate(party, total)
