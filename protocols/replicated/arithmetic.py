"""Products of replicated secrets with their fixed-point truncation fused into the resharing round."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from protocols.additive.dealer import TRUNC, Request, truncation_values
from protocols.additive.truncation import finish_divide, wrap_constants
from protocols.family import Shares

if TYPE_CHECKING:
    from protocols.replicated.family import ReplicatedFamily

#: Stream-id domain (top byte) of the masks of the fused truncation on the pair keys.
_FUSED_DOMAIN = 4 << 56


def fused_truncate(family: ReplicatedFamily, z: torch.Tensor, divisor: int | None = None,
                   bound_bits: int | None = None) -> Shares:
    """Replicated shares of floor(z / divisor) (or that plus one) from the parties' additive shares z_i of a
    product, |z| < 2^bound_bits; divisor defaults to 2^frac_bits, bound_bits to product_bits (a larger one, up
    to ``truncation_fits``, serves a product already scaled by a public factor).

    The additive family's exact truncation (``protocols.additive.truncation._dealer_divide``) with party 0 as the
    dealer of parties 1 and 2, its mask chosen so that party 0's share of the product needs no message:
      1. Parties 0 and 1 expand f_1 = F(k_01), parties 0 and 2 f_2 = F(k_02).  Party 0 takes the truncation
         pair's mask as r = f_1 + f_2 - z_0 (uniform to party 1, which lacks f_2, and to party 2, which lacks
         f_1; party 0 knows it, as a dealer does) and sends party 2 its correction of the pair (s, u) for that r.
      2. Party 1 sends z_1 + f_1 to party 2, party 2 sends z_2 + f_2 to party 1, each masked by a key its
         receiver lacks.  Both now know c = z_1 + f_1 + z_2 + f_2 + O = z + r + O (O the public offset of the
         truncation), uniform whatever z is; party 0 sees nothing.
      3. Parties 1 and 2 finish the truncation as the two parties of the additive protocol do (one keeps
         floor(c/d) - O/d - s_1 + [c < T] u_1, the other -s_2 + [c < T] u_2): a two-party sharing of the result.
      4. ``from_two_of_two``: back to replicated shares (``ReplicatedFamily.call_truncated`` stops after step 3
         and hands the two-party sharing to a helper call, which needs nothing else: 1 round fewer).
    Rounds: 2.  Bytes per element: party 0 sends the correction, 16 bytes or, for a divisor 2^f with
    f <= 16 (a rescale with up to 16 fractional bits), 10 (``short_correction``); parties 1 and 2 send 8 each
    in step 2 and 8 each in step 4 (party 0 sends no share of the product: before, it sent z_0 + r to both, 16 more).
    Error: |result - z/d| < 1, as the additive family's truncation, for every |z| < 2^bound_bits; never a
    failure.
    """
    return fused_truncate_many(family, [(z, divisor, bound_bits)])[0]


def truncate_two_of_two(family: ReplicatedFamily, z: torch.Tensor, divisor: int | None = None,
                        bound_bits: int | None = None) -> torch.Tensor | None:
    """Steps 1 to 3 of ``fused_truncate``: parties 1 and 2 get a two-party additive sharing of floor(z / d) (or
    that plus one), the view a helper call takes; party 0 gets None.  Rounds: 1.  Bytes per element: party 0
    sends 16 or 10 (the pair's correction, as ``fused_truncate``), parties 1 and 2 send 8 each.  Error: as
    ``fused_truncate``."""
    results = truncate_many_two_of_two(family, [(z, divisor, bound_bits)])
    return None if results is None else results[0]


def fused_truncate_many(family: ReplicatedFamily,
                        items: Sequence[tuple[torch.Tensor, int | None, int | None]]) -> list[Shares]:
    """``fused_truncate`` of several values (z, divisor, bound_bits) in its 2 rounds: step 2's messages and
    step 4's return carry every value together.  Bytes: the sum of theirs, less the headers of the messages
    saved.  Error: each value's, as ``fused_truncate``.

    From ``2 * PIPELINE_BLOCK`` elements in all, the same 2 rounds run in blocks (``pipelined_pieces``): every
    block's masked values go out first, then each block is finished and sent back to replicated shares as
    soon as its peer's message is in, so that one block's encryption, transfer and decryption overlap the
    next block's (an 8 MB message took about 7 ms one way here, most of it CurveZMQ's cipher at each end).
    Same values, rounds and bytes per element; one message header more per block and message."""
    count = sum(z.numel() for z, _, _ in items)
    if count < 2 * PIPELINE_BLOCK:
        results = truncate_many_two_of_two(family, items)
        return family.from_two_of_two(results, [tuple(z.shape) for z, _, _ in items])
    pieces, groups = pipelined_pieces([z.numel() for z, _, _ in items])
    flats = [z.reshape(-1) for z, _, _ in items]
    sent = [_send_masked(family, [(flats[item][start:stop], items[item][1], items[item][2])
                                  for item, start, stop in (pieces[index] for index in group)])
            for group in groups]
    family.party.rounds += 1
    converted: list[Shares] = []
    for group, pending in zip(groups, sent):
        shapes = [(pieces[index][2] - pieces[index][1],) for index in group]
        converted.extend(family.from_two_of_two(_finish_masked(family, pending), shapes, new_round=False))
    family.party.rounds += 1
    outputs: list[Shares] = []
    for item, (z, _, _) in enumerate(items):
        parts = [converted[index] for index, piece in enumerate(pieces) if piece[0] == item]
        if len(parts) == 1:
            outputs.append((parts[0][0].reshape(z.shape), parts[0][1].reshape(z.shape)))
        else:
            outputs.append((torch.cat([part[0] for part in parts]).reshape(z.shape),
                            torch.cat([part[1] for part in parts]).reshape(z.shape)))
    return outputs


#: Elements per block of a pipelined ``fused_truncate_many`` (512 KiB of int64): below twice this, one block.
PIPELINE_BLOCK = 1 << 16
#: At most this many blocks: more only add headers once the first block's latency is hidden.
PIPELINE_MAX_BLOCKS = 8


def pipelined_pieces(sizes: Sequence[int]) -> tuple[list[tuple[int, int, int]], list[list[int]]]:
    """How ``fused_truncate_many`` cuts values of ``sizes`` elements into blocks: the pieces (value, start,
    stop), in order, each a contiguous run of one value's flattened elements, and the blocks as lists of piece
    indices.  Every block but the last holds exactly ``block`` elements, block = max(PIPELINE_BLOCK,
    ceil(total / PIPELINE_MAX_BLOCKS)): values are laid end to end and cut at block boundaries.  Every party
    computes the same cut from the same sizes.  A pure function."""
    total = sum(sizes)
    block = max(PIPELINE_BLOCK, -(-total // PIPELINE_MAX_BLOCKS))
    pieces: list[tuple[int, int, int]] = []
    groups: list[list[int]] = [[]]
    filled = 0
    for item, size in enumerate(sizes):
        start = 0
        while True:  # at least one piece per value, an empty one for an empty value
            stop = min(size, start + block - filled)
            groups[-1].append(len(pieces))
            pieces.append((item, start, stop))
            filled += stop - start
            if filled >= block:
                groups.append([])
                filled = 0
            start = stop
            if start >= size:
                break
    if not groups[-1]:
        groups.pop()
    return pieces, groups


def truncate_many_two_of_two(family: ReplicatedFamily,
                             items: Sequence[tuple[torch.Tensor, int | None, int | None]]
                             ) -> list[torch.Tensor] | None:
    """Steps 1 to 3 of ``fused_truncate`` for every (z, divisor, bound_bits) of ``items`` in one round.
    Parties 1 and 2 get each result's two-party sharing, party 0 None.
      1. One mask stream (one tag) over the values laid end to end: each value's elements get their own
         segment of r, as if it had a tag of its own.  Party 0 sends party 2 one pair correction per value
         (its own divisor and bound).
      2. One message each way between parties 1 and 2 carries every masked value.
      3. Each value is finished with its own offset, threshold and pair.
    Rounds: 1.  Bytes per element: party 0 sends 16 or 10, parties 1 and 2 send 8 each, as for one value; one
    message header per value from party 0 and one in all from each of parties 1 and 2.  Error: each value's,
    as ``fused_truncate``."""
    pending = _send_masked(family, items)
    family.party.rounds += 1
    return _finish_masked(family, pending)


@dataclass
class _Masked:
    """Party 1's or 2's half-done ``truncate_many_two_of_two``: what step 3 needs once the peer's message is in."""

    plans: Sequence[tuple[torch.Tensor, int, int, np.uint64, tuple[tuple[int, ...], ...]]]
    streams: list[int]
    masked: torch.Tensor
    tag: int
    bounds: list[int]


def _send_masked(family: ReplicatedFamily, items: Sequence[tuple[torch.Tensor, int | None, int | None]]
                 ) -> _Masked | None:
    """Steps 1 and 2 of ``truncate_many_two_of_two`` without waiting for anything: party 0 sends its
    corrections (and is done: None), parties 1 and 2 their masked values.  Takes the tag and the pair streams,
    in the same order at every party."""
    party, rank = family.party, family.rank
    plans = []
    for z, divisor, bound_bits in items:
        d = party.encoding.scale if divisor is None else int(divisor)
        offset, threshold = wrap_constants(party.encoding.product_bits if bound_bits is None else bound_bits, d)
        plans.append((z, d, offset, threshold, Request(TRUNC, d, (z.numel(),)).output_shapes()))
    flat = torch.cat([z.reshape(-1) for z, _, _ in items]) if len(items) > 1 else items[0][0].reshape(-1)
    count = flat.numel()
    bounds = np.cumsum([0] + [z.numel() for z, *_ in plans]).tolist()
    tag = party.next_tag()
    if rank == 0:
        assert family.helper is not None
        # In place: at 10^6 elements every fresh temporary is 8 MB of page faults.
        mask = family._mask(1, _FUSED_DOMAIN, tag, count).add_(family._mask(2, _FUSED_DOMAIN, tag, count)).sub_(flat)
        for (_, d, *_), start, stop in zip(plans, bounds, bounds[1:]):
            stream = family.helper.next_stream()
            # party 1's shares of (s, u): the pair's words of the stream only (the dealer family's
            # request also carries shares of r, which the mask f_1 + f_2 - z_0 replaces here)
            first = family.helper.prgs[0].ring(stream, pair_words(stop - start, d))
            if short_correction_bits(d):
                family.helper.send_to_last(stream, short_correction(mask[start:stop], first, d))
                continue
            first_pair = first.reshape(2, stop - start)
            s, u = truncation_values(mask[start:stop].cpu(), d)
            first_pair[0].neg_().add_(s.to(first_pair.device))
            first_pair[1].neg_().add_(u.to(first_pair.device))
            family.helper.send_to_last(stream, first_pair)
        return None
    assert family.sub is not None
    streams = [family.sub.next_dealer_request() for _ in plans]
    party.notify_opening("truncate", count * 8)
    masked = family._mask(0, _FUSED_DOMAIN, tag, count).add_(flat)
    party.send(3 - rank, tag, masked)
    return _Masked(plans, streams, masked, tag, bounds)


def _finish_masked(family: ReplicatedFamily, pending: _Masked | None) -> list[torch.Tensor] | None:
    """Step 3 of ``truncate_many_two_of_two``: parties 1 and 2 take the pairs and the peer's masked values
    and finish each value; party 0 (``pending`` None) has nothing left to do."""
    if pending is None:
        return None
    party, rank, sub = family.party, family.rank, family.sub
    assert sub is not None and sub.dealer_prg is not None
    plans, tag, bounds = pending.plans, pending.tag, pending.bounds
    if rank == 1:
        pairs = [party_one_pair(sub.expand(sub.dealer_prg, stream, pair_words(z.numel(), d)), z.numel(), d)
                 for stream, (z, d, *_) in zip(pending.streams, plans)]
    else:
        received = [sub.recv(sub.dealer_id, stream, "helper truncation pair") for stream in pending.streams]
        pairs = [from_short_correction(wire, z.numel(), d) if short_correction_bits(d)
                 else (wire.reshape(shapes[2])[0], wire.reshape(shapes[2])[1])
                 for wire, (z, d, _, _, shapes) in zip(received, plans)]
    summed = party.recv(3 - rank, tag, "truncate").add_(pending.masked)
    results = []
    for (z, d, offset, threshold, _), pair, start, stop in zip(plans, pairs, bounds, bounds[1:]):
        opened = summed[start:stop].add_(offset)
        party.notify_learned("truncate", tag, opened)
        unsigned = opened.cpu().numpy().view(np.uint64)
        results.append(finish_divide(unsigned, pair[0], pair[1], d, offset, threshold, first=rank == 1
                                     ).reshape(z.shape))
    return results


def short_correction_bits(divisor: int) -> int:
    """f where the divisor is 2^f with 1 <= f <= 16, else 0.  For such a divisor the truncation pair's u is
    MSB(r) 2^(64-f) (``truncation_values``), so a share of MSB(r) modulo 2^f, shifted to the top f bits, is a
    share of u: party 0 sends party 2 two bytes for it instead of eight (``short_correction``)."""
    f = divisor.bit_length() - 1
    return f if divisor > 1 and divisor == 1 << f and f <= 16 else 0


def pair_words(count: int, divisor: int) -> int:
    """Words of the PRG stream that parties 0 and 1 expand for party 1's shares of a truncation pair of
    ``count`` elements: 2 count (s_1, u_1), or count + ceil(count / 4) where the correction is short (s_1, then
    16-bit lanes of u_1, four to a word)."""
    return count + -(-count // 4) if short_correction_bits(divisor) else 2 * count


def party_one_pair(words: torch.Tensor, count: int, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Party 1's (s_1, u_1), ``count`` elements each, from its ``pair_words`` stream (views where they can
    be); where the correction is short, u_1 is its 16-bit lane moved to the top f bits (times 2^(64-f)).
    A pure function."""
    if not short_correction_bits(divisor):
        return words[:count], words[count:]
    lanes = words[count:].view(torch.int16)[:count].to(torch.int64).bitwise_and_(0xFFFF)
    return words[:count], lanes.mul_(top_bits_factor(short_correction_bits(divisor)))


def short_correction(mask: torch.Tensor, first: torch.Tensor, divisor: int) -> torch.Tensor:
    """Party 0's correction of a truncation pair for d = 2^f (``short_correction_bits``): the n words s - s_1,
    then the n values MSB(r) - u_1 modulo 2^f as 16-bit lanes packed four to a word (ceil(n / 4) words), where
    ``first`` is party 1's ``pair_words`` stream: s_1, then u_1's lanes (``party_one_pair``).  About 10 bytes per
    element instead of 16, still int64 words; the shares add up to the same (s, u) modulo 2^64.  Written over
    ``first`` (a CPU tensor, whose words are exactly that many) and returned: no other state."""
    f = short_correction_bits(divisor)
    count = mask.numel()
    unsigned = mask.cpu().numpy().view(np.uint64)
    words = first.cpu()
    words[:count].neg_().add_(torch.from_numpy((unsigned >> np.uint64(f)).view(np.int64)))  # s - s_1, in place
    lanes = words[count:].numpy().view(np.uint16)  # u_1's lanes, overwritten with MSB(r) - u_1 mod 2^f
    high = (unsigned >> np.uint64(63)).astype(np.uint16)
    np.subtract(high, lanes[:count], out=lanes[:count])
    np.bitwise_and(lanes, np.uint16((1 << f) - 1), out=lanes)
    lanes[count:] = 0  # the last word's unused lanes
    return words


def from_short_correction(wire: torch.Tensor, count: int, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Party 2's (s_2, u_2), ``count`` elements each, from ``short_correction``'s words: s_2 a view of them,
    u_2 = (its f-bit share) 2^(64-f).  A pure function."""
    words = wire.cpu().numpy().reshape(-1)
    if words.size != count + -(-count // 4):
        raise ValueError(f"a short truncation correction for {count} elements has {count + -(-count // 4)} words, "
                         f"not {words.size}")
    lanes = words[count:].view(np.uint16)[:count].astype(np.uint64)
    u = lanes << np.uint64(64 - short_correction_bits(divisor))
    return wire.reshape(-1)[:count], torch.from_numpy(u.view(np.int64)).to(wire.device)


def top_bits_factor(f: int) -> int:
    """2^(64-f) as a signed 64-bit integer (f >= 1): multiplying by it, modulo 2^64, moves a value's low f bits
    to the top."""
    value = 1 << (64 - f)
    return value - (1 << 64) if value >= 1 << 63 else value
