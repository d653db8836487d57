"""Comparison with zero in three rounds, for two parties whose dealer also answers once online (the replicated
family's helper: party 0 serves parties 1 and 2, ``protocols.replicated.helper``).

The dealer process of the additive family never sees anything but requests, so this is not for it: here the
helper receives, once per comparison, values that are uniformly random to it except for one bit that is itself
masked by a coin only the two parties know (the private comparison of SecureNN, Wagh, Gupta and Chandran, PETS
2019, with the helper dealing the mask).  Against any one corrupted party of three (the replicated family's
threat model) it is as secure as the eight-round ``ltz``, with five rounds fewer and about twice the bytes, so
``ltz`` uses it up to ``Party.helper_compare_max`` elements per call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fixedpoint import logical_shift_right
from network import ProtocolError
from protocols.additive.dealer import COMPARE, Correlated, Request, expand_parts
from protocols.party import Party
from protocols.prg import AesCtrPrg

#: The prime field of the positions' test values: larger than the 64 a value can reach, and small enough for a
#: byte on the wire.
MODULUS = 67
#: Positions compared per element: the 63 low bits of the masked value, and one that tests equality.
POSITIONS = 64
#: Low bits of r whose shares the dealer makes (everything but the sign bit).
LOW_BITS = 63
#: Offset of the tags that carry the parties' test values to the helper and its answer back, past the stream id
#: (the helper's tags for requests and corrections are the stream id itself).
ANSWER_TAG = 1 << 61
#: Stream-id domains (top byte): on the two parties' pair key (``protocols.additive.sharing`` takes 1 and 2), and
#: on party 0's key with the helper, whose request streams count up from 1.
_FLIP_DOMAIN = 5 << 56
_SCALE_DOMAIN = 6 << 56
_ZERO_DOMAIN = 7 << 56
_BITS_DOMAIN = 8 << 56


def helped_ltz(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Additive shares of the bit [x < 0] (an unscaled 0 or 1 in the ring), same shape as ``x``, for the two
    parties of a sub-session whose dealer answers online (``Party.helper_compare_max``).

    Steps (x read as a signed 64-bit ring element: MSB(x) = c_63 ^ r_63 ^ [c' < r'], where c = x + r and c', r'
    are the low 63 bits):
      1. The dealer's material (``compare_material``): r, additively shared; each of r's 63 low bits r_i,
         additively shared modulo p = 67; and party 0's share g of the helper's answer.
      2. Open c = x + r between the two parties (one round).  c is uniform whatever x is.
      3. Local, with a coin beta, a scale s_i (uniform in 1..p-1), a zero mask m_i (uniform mod p) and a rotation
         from the parties' pair key (the helper knows none of them): with w_k = c_k ^ r_k (linear in the shares
         of r_k), S_i = sum over k > i of w_k and sigma = 1 - 2 beta, the shares of
             d_i = sigma (c_i - r_i) + 1 + S_i for i = 0..62, and d_63 = beta sum_k w_k + (1 - beta).
         Every d_i lies in 0..64 < p.  For beta = 0 some d_i is 0 exactly when r' > c' (at the highest bit
         where they differ, r has the 1); for beta = 1 exactly when c' > r', or (d_63) c' = r'.  At most one is.
      4. Each party sends the helper s_i times its share of d_i, plus m_i (party 0) or minus m_i (party 1), mod
         p, the 64 positions rotated (one round, one byte each).  (Parties 0 and 1 here are the sub-session's:
         the replicated family's parties 1 and 2; the helper is its party 0.)
      5. The helper adds them: beta' = [some position is 0] = beta ^ [c' < r'].  It sends party 1 its share
         gamma - g of gamma = beta' ^ r_63 (one round; party 0 is not waiting for it).
      6. Local: with delta = beta ^ c_63 (both parties know it), MSB(x) = delta ^ gamma = delta + (1 - 2 delta)
         gamma, linear in the shares of gamma.
    What the helper sees: two uniform vectors whose sum is, per position, uniform over 1..p-1 but for at most one
    0 at a uniform rotation, so only beta', which the coin makes uniform.  What each party sees: c, uniform.
    Rounds: 3.  Bytes sent per party per element: 8 (the opening) + 64 (to the helper); the helper sends party
    1 its material, 63 per element, and the answer, 8 (``helped_ltz_bytes``, ``helped_ltz_dealer_bytes``).
    Randomness: every residue (bit shares, scales, zero masks) is exactly uniform (rejection sampling of bytes).
    Local work: about 20 operations on count x 64 int32 values.
    Error: none (exact for every ring element).
    """
    flat = x.reshape(-1)
    count = flat.numel()
    first = party.rank == 0
    material = Correlated(party, Request(COMPARE, 0, (count,)))
    stream = material.stream
    opened = party.open(flat + material.a, "compare")
    assert party.dealer_prg is not None  # Correlated checked it
    if first:
        bit_shares = _uniform_below(party.dealer_prg, _BITS_DOMAIN | stream, count * LOW_BITS, MODULUS)
    else:
        bit_shares = material.c.cpu().numpy()
    tag = party.next_tag()
    pair = party.pair_prgs[1 - party.rank]
    coins = torch.from_numpy(_bytes(pair, _FLIP_DOMAIN | tag, count).astype(np.int64)).unsqueeze(1)
    flip, rotation = ((coins >> 6) & 1).to(torch.int32), coins & (POSITIONS - 1)
    scale = torch.from_numpy(_uniform_below(pair, _SCALE_DOMAIN | tag, count * POSITIONS, MODULUS - 1) + 1)
    zero = torch.from_numpy(_uniform_below(pair, _ZERO_DOMAIN | tag, count * POSITIONS, MODULUS))
    public = opened.cpu()
    tests = position_values(public, bit_shares.reshape(count, LOW_BITS), flip, first)
    masked = scale.reshape(count, POSITIONS) * tests
    zero = zero.reshape(count, POSITIONS)
    masked = torch.remainder(masked + zero if first else masked - zero, MODULUS)
    turn = (torch.arange(POSITIONS) + rotation) & (POSITIONS - 1)
    masked = torch.gather(masked, 1, turn).to(torch.uint8)
    party.notify_opening("to helper", masked.numel())
    party.send(party.dealer_id, ANSWER_TAG + stream, masked)
    party.notify_opening("helper answer", 0)
    if first:
        gamma = material.b
    else:
        gamma = party.recv(party.dealer_id, ANSWER_TAG + stream, "helper answer")
        if gamma.dtype != torch.int64 or gamma.numel() != count:
            raise ValueError(f"the helper answered {gamma.numel()} {gamma.dtype} values for {count} comparisons")
        gamma = gamma.reshape(-1)
    party.rounds += 2
    delta = ((flip.reshape(-1).to(torch.int64) ^ logical_shift_right(public, 63)) & 1).to(flat.device)
    msb = (1 - 2 * delta) * gamma
    if first:
        msb = msb + delta
    return msb.reshape(x.shape)


def position_values(public: torch.Tensor, bit_shares: np.ndarray, flip: torch.Tensor, first: bool
                    ) -> torch.Tensor:
    """Step 3 of ``helped_ltz`` before the scales and masks: this party's shares (int32, count x 64, not yet
    reduced mod p) of d_0..d_63 for the opened words ``public`` (count), its shares of r's low bits
    ``bit_shares`` (count x 63, residues) and the coins ``flip`` (count x 1, 0 or 1); ``first``: party 0, which
    adds the public terms.  Local."""
    c_bits = torch.from_numpy(_low_bits(public.numpy())).to(torch.int32)
    shares = torch.from_numpy(bit_shares.astype(np.int32))
    differs = (1 - 2 * c_bits) * shares  # shares of w_i = c_i ^ r_i = c_i + (1 - 2 c_i) r_i
    if first:
        differs += c_bits
    prefix = differs.cumsum(1, dtype=torch.int32)
    total = prefix[:, -1:]
    tests = (1 - 2 * flip) * ((c_bits if first else 0) - shares) + (total - prefix)
    equal = flip * total
    if first:
        tests += 1
        equal += 1 - flip
    return torch.cat([tests, equal], dim=1)


def compare_material(prgs: Sequence[AesCtrPrg], stream: int, request: Request
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The helper's side of step 1 of ``helped_ltz``: (r, party 0's answer share g, party 1's correction).

    Steps: 1. expand party 0's stream into (a_0, g) and party 1's into (a_1, unused); r = a_0 + a_1;
    2. party 0's bit shares t_i, drawn as it draws them; 3. the correction t'_i = r_i - t_i mod p, one byte each.
    Cost: two PRG expansions of 16 bytes per element and party 0's residues (about 95 bytes of AES per element);
    63 bytes per element to party 1.
    """
    shape_a, shape_b, _ = request.output_shapes()
    count = shape_a[0]
    a_0, g = expand_parts(prgs[0], stream, (shape_a, shape_b))
    a_1, _ = expand_parts(prgs[1], stream, (shape_a, shape_b))
    r = a_0 + a_1
    bits = _low_bits(r.numpy()).astype(np.int16)
    difference = bits - _uniform_below(prgs[0], _BITS_DOMAIN | stream, count * LOW_BITS, MODULUS).reshape(bits.shape)
    correction = np.where(difference < 0, difference + MODULUS, difference).astype(np.uint8)
    return r, g, torch.from_numpy(correction)


def helper_verdict(first: np.ndarray, second: np.ndarray, r: torch.Tensor, g: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The helper's step 5 of ``helped_ltz``: (beta' = [some position of the sum is 0], what the helper learns;
    party 1's share gamma - g of gamma = beta' ^ r_63), from the two parties' test values (``count`` x 64 bytes
    each).  ProtocolError if they are not that.  Local."""
    count = r.numel()
    for values in (first, second):
        if values.dtype != np.uint8 or values.shape != (count, POSITIONS):
            raise ProtocolError(f"helper comparison: expected {count} x {POSITIONS} bytes, got {values.dtype} "
                                f"{values.shape}")
        if values.size and int(values.max()) >= MODULUS:
            raise ProtocolError(f"helper comparison: a test value outside 0..{MODULUS - 1}")
    sums = first.astype(np.int16) + second
    found = ((sums == 0) | (sums == MODULUS)).any(axis=1)
    verdict = torch.from_numpy(found.astype(np.int64))
    gamma = verdict ^ logical_shift_right(r, 63)
    return verdict, gamma - g


def helped_ltz_bytes(count: int) -> int:
    """Payload bytes each of the two parties sends in one ``helped_ltz`` call on ``count`` elements: 8 to the
    other party, 64 to the helper, per element."""
    return (8 + POSITIONS) * count


def helped_ltz_dealer_bytes(count: int) -> int:
    """Bytes the helper sends the last party in one ``helped_ltz`` call: its bit shares and its answer share."""
    return (LOW_BITS + 8) * count


def _low_bits(words: np.ndarray) -> np.ndarray:
    """Bits 0..62 of int64 words, count x 63 uint8 (least significant first)."""
    little = words.astype("<i8", copy=False).reshape(-1, 1).view(np.uint8)
    return np.unpackbits(little, axis=1, bitorder="little")[:, :LOW_BITS]


def _bytes(prg: AesCtrPrg, stream: int, count: int) -> np.ndarray:
    """``count`` uniform bytes of stream ``stream`` (the first ``count`` of it, whatever ``count``)."""
    return prg.ring(stream, -(-count // 8)).numpy().view(np.uint8)[:count]


def _uniform_below(prg: AesCtrPrg, stream: int, count: int, bound: int) -> np.ndarray:
    """``count`` values exactly uniform in 0..bound-1 (bound <= 256), int16, from stream ``stream``: bytes below
    the largest multiple of ``bound`` are kept, in order, and reduced; a draw that keeps too few is repeated
    longer (the stream's start is the same, so both parties keep the same values)."""
    limit = 256 - 256 % bound
    residues = (np.arange(256) % bound).astype(np.int16)  # byte -> residue: a lookup is cheaper than a division
    draw = count + count // 2 + 64
    while True:
        raw = _bytes(prg, stream, draw)
        kept = np.compress(raw < limit, raw)
        if kept.size >= count:
            return residues.take(kept[:count])
        draw *= 2

