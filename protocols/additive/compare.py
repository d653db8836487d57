"""Exact comparison of shared values with zero, and what builds on it (select, relu, sign, abs).

``ltz`` decides [x < 0] for additive shares of any ring element x (so any fixed-point value in range, and any
difference of two such values) with no approximation and no failure probability.
"""

from __future__ import annotations

import torch

from fixedpoint import logical_shift_right
from protocols.additive.arithmetic import mul
from protocols.additive.dealer import binary_triple, masked_bits, random_bit
from protocols.party import Party

_LOW_63 = (1 << 63) - 1
_TOP_BIT = -(1 << 63)
#: Shift distances of the carry tree over a 64-bit word.
_LEVELS = (1, 2, 4, 8, 16, 32)


def ltz(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Additive shares of the bit [x < 0] (an unscaled 0 or 1 in the ring), same shape as ``x``.

    Steps (x read as a signed 64-bit ring element; MSB(x) = [x < 0]):
      1. Take a dealer mask r, additively shared and XOR-shared as a 64-bit word.
      2. Open c = x + r (one round).  c is uniform whatever x is.
      3. MSB(x) = c_63 XOR r_63 XOR [c' < r'] where c', r' are the low 63 bits (the borrow of c - r into
         bit 63).  [c' < r'] for public c' and XOR-shared r' is a carry chain: per bit, g = r & ~c ("r wins
         here") and p = ~(r ^ c) ("tie here"), both local on XOR shares.
      4. Fold (g, p) over the word in 6 levels, s = 1, 2, ..., 32:  g <- (g >> s) ^ ((p >> s) & g),
         p <- (p >> s) & p, shifting ones into p from the top.  Each level's two ANDs share one operand and
         use one binary triple: one round of 3 words opened (2 at the last level, which needs no p).
      5. Bit 0 of g is [c' < r']; XOR in c_63 and r_63: XOR shares of MSB(x).
      6. Convert to additive shares with a dealer random bit rho (XOR- and additively shared): open
         o = MSB ^ rho (one round, one byte), then MSB = o + rho - 2 o rho, local.
    Rounds: 8.  Bytes sent per party per element: (8 + 5*24 + 16 + 1) (n-1) = 145 (n-1).  Dealer: 104 bytes per
    element to the last party only.  Error: none (exact for every ring element).
    """
    flat = x.reshape(-1)
    mask = masked_bits(party, flat.shape)
    public = party.open(flat + mask.a, "compare")
    r_xor = mask.c
    not_public = ~public
    generate = r_xor & not_public & _LOW_63
    propagate = r_xor & _LOW_63
    if party.rank == 0:
        propagate = propagate ^ (not_public & _LOW_63) ^ _TOP_BIT
    for shift in _LEVELS:
        top_ones = -(1 << (64 - shift))
        generate_hi = logical_shift_right(generate, shift)
        propagate_hi = logical_shift_right(propagate, shift)
        if party.rank == 0:
            propagate_hi = propagate_hi ^ top_ones
        last = shift == _LEVELS[-1]
        operands = generate.unsqueeze(0) if last else torch.stack([generate, propagate])
        products = binary_and(party, propagate_hi, operands)
        generate = generate_hi ^ products[0]
        if not last:
            propagate = products[1]
    msb = (generate ^ logical_shift_right(r_xor, 63)) & 1
    if party.rank == 0:
        msb = msb ^ logical_shift_right(public, 63)
    return xor_bit_to_additive(party, msb).reshape(x.shape)


def binary_and(party: Party, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """XOR shares of x & y for XOR-shared 64-bit words (broadcasting), by a binary Beaver triple.

    Steps: 1. triple (a, b, c = a & b); 2. open e = x ^ a and d = y ^ b in one round; 3. each party keeps
    c ^ (e & b) ^ (a & d), party 0 also e & d.  Rounds: 1.  Bytes: 8 (n-1) (|x| + |y|).  Error: none.
    """
    triple = binary_triple(party, x.shape, y.shape)
    opened = party.open(torch.cat([(x ^ triple.a).reshape(-1), (y ^ triple.b).reshape(-1)]), "and", xor=True)
    e = opened[: x.numel()].reshape(x.shape)
    d = opened[x.numel() :].reshape(y.shape)
    z = triple.c ^ (e & triple.b) ^ (triple.a & d)
    if party.rank == 0:
        z = z ^ (e & d)
    return z


def xor_bit_to_additive(party: Party, bit: torch.Tensor) -> torch.Tensor:
    """Additive shares of a bit given as XOR shares in bit 0 of int64 words (other bits zero).

    Steps: 1. dealer bit rho, XOR- and additively shared; 2. open o = bit ^ rho (one round, one byte per
    element); 3. bit = o + rho - 2 o rho, local.  Rounds: 1.  Bytes: (n-1) k.  Error: none.
    """
    rho = random_bit(party, bit.shape)
    opened = party.open(((bit ^ rho.a) & 1).to(torch.uint8), "bit conversion", xor=True).to(torch.int64)
    result = rho.c * (1 - 2 * opened)
    if party.rank == 0:
        result = result + opened
    return result


def select(party: Party, bit: torch.Tensor, if_one: torch.Tensor, if_zero: torch.Tensor) -> torch.Tensor:
    """``if_one`` where the unscaled bit is 1, else ``if_zero`` (shares, broadcasting as torch does).

    Steps: if_zero + bit * (if_one - if_zero), one Beaver product without truncation (the bit is an integer).
    Rounds: 1.  Bytes: 8 (n-1) (|bit| + |operand|).  Error: none.
    """
    return if_zero + mul(party, bit, if_one - if_zero, rescale=False)


def relu(party: Party, x: torch.Tensor) -> torch.Tensor:
    """max(x, 0): x times [x >= 0].  Rounds: 9 (ltz + one product).  Bytes: (145 + 16) (n-1) per element.
    Error: none."""
    return mul(party, _one(party, x) - ltz(party, x), x, rescale=False)


def sign(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Unscaled shares of sign(x) in {-1, 0, 1} (torch.sign: 0 at 0): [x > 0] - [x < 0] from one batched ltz.
    Rounds: 8.  Bytes: 290 (n-1) per element.  Error: none, for every ring element but -2^63 (whose negation
    wraps to itself, giving 0), which no fixed-point value or difference of two values can be."""
    both = ltz(party, torch.stack([-x, x]))
    return both[0] - both[1]


def absolute(party: Party, x: torch.Tensor) -> torch.Tensor:
    """|x| = x (1 - 2 [x < 0]).  Rounds: 9.  Bytes: (145 + 16) (n-1) per element.  Error: none."""
    return mul(party, _one(party, x) - 2 * ltz(party, x), x, rescale=False)


def _one(party: Party, like: torch.Tensor) -> torch.Tensor:
    """Unscaled shares of the integer 1 (party 0 holds it)."""
    return torch.full_like(like, 1 if party.rank == 0 else 0)


def maximum(party: Party, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shares of the maximum along ``dim`` (dim removed) and an unscaled one-hot of its first position
    (x's shape), as torch.max / torch.argmax pick the first of equal maxima.

    Steps: a tournament over ``dim``; each level pairs neighbours (lo, hi), computes [hi > lo] for all pairs in
    ONE ltz call, and selects value and one-hot of the winner in ONE product (hi wins only if strictly
    greater, so the earlier index wins ties); an odd element passes to the next level unchanged.
    Rounds: 9 ceil(log2 m) for m elements along dim.  Bytes per party: about (145 + 16 (m+1)) (n-1) per
    compared pair.  Error: none.
    """
    dim = dim % x.dim() if x.dim() else 0
    values = x.movedim(dim, 0)
    count = values.shape[0]
    if count == 0:
        raise ValueError("maximum of an empty dimension")
    if party.rank == 0:
        eye = torch.eye(count, dtype=torch.int64, device=x.device)
    else:
        eye = torch.zeros(count, count, dtype=torch.int64, device=x.device)
    onehots = eye.reshape(count, count, *([1] * (values.dim() - 1))).expand(count, count, *values.shape[1:])
    while values.shape[0] > 1:
        pairs = values.shape[0] // 2
        lo, hi = values[0 : 2 * pairs : 2], values[1 : 2 * pairs : 2]
        lo_hot, hi_hot = onehots[0 : 2 * pairs : 2], onehots[1 : 2 * pairs : 2]
        hi_wins = ltz(party, lo - hi)
        value_bits = hi_wins.reshape(-1)
        hot_bits = hi_wins.unsqueeze(1).expand_as(lo_hot).reshape(-1)
        chosen = mul(party, torch.cat([value_bits, hot_bits]),
                     torch.cat([(hi - lo).reshape(-1), (hi_hot - lo_hot).reshape(-1)]), rescale=False)
        new_values = lo + chosen[: value_bits.numel()].reshape(lo.shape)
        new_hots = lo_hot + chosen[value_bits.numel() :].reshape(lo_hot.shape)
        if values.shape[0] % 2:
            new_values = torch.cat([new_values, values[-1:]])
            new_hots = torch.cat([new_hots, onehots[-1:]])
        values, onehots = new_values, new_hots
    return values[0], onehots[0].movedim(0, dim)
