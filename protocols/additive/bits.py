"""Bit decomposition of shared ring elements, and scans over XOR-shared words.

``bit_decompose`` turns additive shares of x into XOR shares of the bits of x (one 64-bit word per element):
one masked opening and a parallel-prefix borrow chain, exact for every ring element.  ``or_from_top`` then
gives, in log-many AND levels, every bit's "some bit at or above this one is set", which is all the
comparisons x >= 2^t at once (``protocols.approx.normalize``).
"""

from __future__ import annotations

import torch

from fixedpoint import logical_shift_right
from protocols.additive.compare import binary_and
from protocols.additive.dealer import masked_bits
from protocols.party import Party

WORD_BITS = 64


def low_mask(bits: int) -> int:
    """The int64 word with bits 0..bits-1 set (all 64: -1)."""
    return -1 if bits >= WORD_BITS else (1 << bits) - 1


def scan_levels(span: int) -> int:
    """Levels of a log-step scan (shifts 1, 2, 4, ...) for every position to combine ``span`` positions
    (itself included): the smallest L with 2^L >= span."""
    return max(span - 1, 0).bit_length()


def bit_decompose(party: Party, x: torch.Tensor, bits: int = WORD_BITS) -> torch.Tensor:
    """XOR shares of the low ``bits`` bits of each ring element x: one int64 word per element (x's shape),
    bit i of the word being bit i of x (x read as an unsigned 64-bit word; bits from ``bits`` up are 0).

    Steps:
      1. Take a dealer mask r (``masked_bits``): additively shared and XOR-shared as a 64-bit word.
      2. Open c = x + r (one round).  c is uniform whatever x is.
      3. x = c - r, so bit i of x is c_i ^ r_i ^ b_i, where b_i = [c mod 2^i < r mod 2^i] is the borrow into
         bit i.  Per bit, g = r & ~c ("the subtraction borrows here") and p = ~(r ^ c) ("a borrow from below
         passes through"), local on XOR shares (party 0 alone XORs in the public ~c).
      4. Kogge-Stone scan over the word, L = ceil(log2(bits - 1)) levels s = 1, 2, ..., 2^(L-1):
         G <- G ^ (P & (G << s)), P <- P & (P << s).  Each level is one ``binary_and`` of P with (G << s,
         P << s): one round of 3 words opened (2 at the last level, which needs no P).  Afterwards bit i of G
         is the borrow out of bits 0..i, so the borrows are b = G << 1.
      5. Local: c ^ r ^ b (party 0 XORs in c), the low ``bits`` bits kept.
    Rounds: 1 + L: 7 for 64 bits, 6 for 32 (or 33).  Bytes sent per party per element: (8 + 24 (L-1) + 16)
    (n-1): 144 (n-1) for 64 bits, 120 (n-1) for 32.  Dealer: 8 + 16 (L-1) + 8 = 16 L bytes per element to
    the last party (96 for 64 bits, 80 for 32).  Error: none (exact for every ring element).
    """
    if not 1 <= bits <= WORD_BITS:
        raise ValueError(f"bits must be in 1..{WORD_BITS}, got {bits}")
    mask = masked_bits(party, x.shape)
    public = party.open(x + mask.a, "compare")
    r_xor = mask.c
    not_public = ~public
    generate = r_xor & not_public
    propagate = r_xor if party.rank != 0 else r_xor ^ not_public
    levels = scan_levels(bits - 1)
    for level in range(levels):
        shift = 1 << level
        last = level == levels - 1
        lower = [generate << shift] if last else [generate << shift, propagate << shift]
        products = binary_and(party, propagate, torch.stack(lower))
        generate = generate ^ products[0]
        if not last:
            propagate = products[1]
    result = r_xor ^ (generate << 1)
    if party.rank == 0:
        result = result ^ public
    return result & low_mask(bits)


def or_from_top(party: Party, words: torch.Tensor, width: int) -> torch.Tensor:
    """XOR shares of the words whose bit t (t < ``width``) is the OR of bits t..width-1 of ``words``
    (XOR-shared words whose bits from ``width`` up are 0; they stay 0).

    Steps: log-step scan, S <- S | (S >> s) for s = 1, 2, ..., 2^(L-1), L = ceil(log2 width); each OR is
    NOT(NOT S AND NOT (S >> s)), one ``binary_and`` (party 0 alone flips the words: NOT is XOR with a public
    all-ones word).  Rounds: L (5 for 32 bits).  Bytes sent per party per element: 16 L (n-1).
    Dealer: 8 L bytes per element.  Error: none.
    """
    result = words
    for level in range(scan_levels(width)):
        shifted = logical_shift_right(result, 1 << level)
        if party.rank == 0:
            result, shifted = ~result, ~shifted
        result = binary_and(party, result, shifted)
        if party.rank == 0:
            result = ~result
    return result
