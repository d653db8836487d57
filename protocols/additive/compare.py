"""Exact comparison of shared values with zero, and what builds on it (select, relu, sign, abs).

``ltz`` decides [x < 0] for additive shares of any ring element x (so any fixed-point value in range, and any
difference of two such values) with no approximation and no failure probability.  Rounds and bytes below are the
tree's; where the dealer answers online (the replicated family's helper sub-session), an ``ltz`` of up to
``Party.helper_compare_max`` (1,024) elements takes ``helped.helped_ltz`` instead (3 rounds, 72 bytes per element
and party), and so do the comparisons inside ``sign``, ``relu``, ``absolute``, ``maximum`` and
``protocols.additive.range``.
"""

from __future__ import annotations

import torch

from fixedpoint import logical_shift_right
from protocols.additive.arithmetic import mul
from protocols.additive.dealer import binary_triple, masked_bits, random_bit
from protocols.additive.helped import helped_ltz
from protocols.party import Party

_LOW_63 = (1 << 63) - 1
_TOP_BIT = -(1 << 63)


def ltz(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Additive shares of the bit [x < 0] (an unscaled 0 or 1 in the ring), same shape as ``x``.

    Steps (x read as a signed 64-bit ring element; MSB(x) = [x < 0]):
      1. Take a dealer mask r, additively shared and XOR-shared as a 64-bit word.
      2. Open c = x + r (one round).  c is uniform whatever x is.
      3. MSB(x) = c_63 XOR r_63 XOR [c' < r'] where c', r' are the low 63 bits (the borrow of c - r into
         bit 63).  [c' < r'] for public c' and XOR-shared r' is decided from the top: per bit, g = r & ~c
         ("r wins here") and p = ~(r ^ c) ("tie here"), both local on XOR shares; bit 63 is the neutral
         (g, p) = (0, 1).
      4. A tree over the 64 positions, 6 levels: each level pairs neighbouring blocks (lo, hi) and keeps
         g = g_hi ^ (p_hi & g_lo), p = p_hi & p_lo (the upper block decides unless it ties).  Only the live
         blocks travel: each level's bits are packed into 64-bit words across all elements (``compress_bits``),
         so a level with L blocks per element opens 3 L / 2 bits per element (2 bits at the last, which needs
         no p), one binary triple and one round per level.
      5. The last g is [c' < r']; XOR in c_63 and r_63: XOR shares of MSB(x).
      6. Convert to additive shares with a dealer random bit rho (XOR- and additively shared): open
         o = MSB ^ rho (one round, one byte), then MSB = o + rho - 2 o rho, local.
    Rounds: 8.  Bytes sent per party per element: 8 + (96 + 48 + 24 + 12 + 6 + 2) / 8 + 1 = 32.5, times (n-1)
    (exactly ``ltz_bytes(count)``: the packed words round up once per call, not per element; 145 for one
    element).  Dealer: to the last party only, ``ltz_dealer_bytes(count)``, 31.6 bytes per element for large
    counts (the mask 8, the six packed triples' corrections 15.6, the bit 8).
    Error: none (exact for every ring element).
    Where the dealer answers online (the replicated family's helper sub-session, ``Party.helper_compare_max``
    elements at most, 1,024 there), ``helped.helped_ltz`` does it instead: 3 rounds, 72 bytes per element.
    """
    flat = x.reshape(-1)
    if 0 < flat.numel() <= party.helper_compare_max:
        return helped_ltz(party, x)
    mask = masked_bits(party, flat.shape)
    public = party.open(flat + mask.a, "compare")
    r_xor = mask.c
    not_public = ~public
    generate = r_xor & not_public & _LOW_63
    propagate = r_xor & _LOW_63
    if party.rank == 0:
        propagate = propagate ^ (not_public & _LOW_63) ^ _TOP_BIT
    count = generate.numel()
    for width in _LANE_WIDTHS:  # lanes of `width` bits per element, 64 / width elements to a word, in order
        last = width == _LANE_WIDTHS[-1]
        # One compression of the four rows: even and odd bits of g and p (torch's cost here is per call).
        pairs = torch.stack([generate, propagate])
        lo_g, lo_p, hi_g, hi_p = compress_bits(torch.cat([pairs, logical_shift_right(pairs, 1)]), odd=False)
        products = binary_and(party, hi_p, lo_g.unsqueeze(0) if last else torch.stack([lo_g, lo_p]))
        generate = hi_g ^ products[0]
        if not last:
            propagate = products[1]
    positions = torch.arange(64, dtype=torch.int64, device=generate.device)
    below = ((generate.unsqueeze(1) >> positions) & 1).reshape(-1)[:count]
    msb = (below ^ logical_shift_right(r_xor, 63)) & 1
    if party.rank == 0:
        msb = msb ^ logical_shift_right(public, 63)
    return xor_bit_to_additive(party, msb).reshape(x.shape)


def gtz(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Additive shares of the bit [x > 0], same shape as ``x``: ``ltz`` of -x.

    Steps: 1. Negate x (local).  2. ``ltz``.
    Rounds: 8.  Bytes: as ``ltz``.  Error: none (exact; -x is exact for every ring element but -2^63, which no
    fixed-point value reaches).
    """
    return ltz(party, -x)


def ltz_bytes(count: int) -> int:
    """Payload bytes each party sends each other party in one ``ltz`` call on ``count`` elements (the cost
    model of its docstring, exactly): the masked opening, the six packed levels, the bit conversion."""
    levels = sum(3 * 8 * -(-count * blocks // 128) for blocks in (64, 32, 16, 8, 4))
    return 8 * count + levels + 2 * 8 * -(-count // 64) + count


def ltz_dealer_bytes(count: int) -> int:
    """Correction bytes the dealer sends the last party for one ``ltz`` call on ``count`` elements."""
    levels = sum(2 * 8 * -(-count * blocks // 128) for blocks in (64, 32, 16, 8, 4))
    return 8 * count + levels + 8 * -(-count // 64) + 8 * count


#: Lane widths of the comparison tree's levels: each level halves the blocks every element keeps.
_LANE_WIDTHS = (64, 32, 16, 8, 4, 2)
#: Masks of the bit-compression steps: keep the even bits, then gather them in pairs, nibbles, bytes, ...
_COMPRESS = (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x00FF00FF00FF00FF,
             0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)
_COMPRESS_MASKS = tuple(m - (1 << 64) if m >> 63 else m for m in _COMPRESS)


def compress_bits(words: torch.Tensor, *, odd: bool) -> torch.Tensor:
    """The even (or odd) bits of packed words, packed again at half the lane width: for K words holding lanes of
    w bits, ceil(K / 2) words holding the same elements' lanes of w / 2 bits, in the same order (bit 2i of a
    word goes to bit i; two words' halves share a word).  Along the last dimension: rows of a 2-D input are
    compressed each on its own.  Local and XOR-linear, so it applies to XOR shares."""
    x = logical_shift_right(words, 1) if odd else words
    x = x & _COMPRESS_MASKS[0]
    for shift, mask in zip((1, 2, 4, 8, 16), _COMPRESS_MASKS[1:]):
        x = (x | (x >> shift)) & mask  # arithmetic shifts are harmless: every mask clears bit 63
    if x.shape[-1] % 2:
        x = torch.cat([x, x.new_zeros((*x.shape[:-1], 1))], dim=-1)
    return x[..., 0::2] | (x[..., 1::2] << 32)


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
    """max(x, 0): x times [x >= 0].  Rounds: 9 (ltz + one product).  Bytes: (32.5 + 16) (n-1) per element.
    Error: none."""
    return mul(party, _one(party, x) - ltz(party, x), x, rescale=False)


def sign(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Unscaled shares of sign(x) in {-1, 0, 1} (torch.sign: 0 at 0): [x > 0] - [x < 0] from one batched ltz.
    Rounds: 8.  Bytes: 65 (n-1) per element (one ltz on both).  Error: none, for every ring element but -2^63
    (whose negation wraps to itself, giving 0), which no fixed-point value or difference of two values can be."""
    both = ltz(party, torch.stack([-x, x]))
    return both[0] - both[1]


def absolute(party: Party, x: torch.Tensor) -> torch.Tensor:
    """|x| = x (1 - 2 [x < 0]).  Rounds: 9.  Bytes: (32.5 + 16) (n-1) per element.  Error: none."""
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
    Rounds: 9 ceil(log2 m) for m elements along dim.  Bytes per party: about (32.5 + 16 (m+1)) (n-1) per
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
