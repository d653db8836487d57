"""Products of replicated secrets with their fixed-point truncation fused into the resharing round."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from protocols.additive.dealer import TRUNC, Request, truncation_values, unsigned_divide
from protocols.additive.truncation import finish_divide, wrap_constants
from protocols.family import Shares

if TYPE_CHECKING:
    from protocols.replicated.family import ReplicatedFamily

#: Stream-id domains (top byte) on the pair keys: the masks of the fused truncation, and the lanes g_1 = F(k_01),
#: g_2 = F(k_02) of its short return to replicated shares (``fused_truncate``, step 3).
_FUSED_DOMAIN = 4 << 56
_LANES_DOMAIN = 5 << 56
#: Appended to the label of an opening that is a later block of a pipelined round (``fused_truncate_many``): the
#: benchmark's cost model counts its bytes and header but not another round.
NEXT_BLOCK = ", next block"


def fused_truncate(family: ReplicatedFamily, z: torch.Tensor, divisor: int | None = None,
                   bound_bits: int | None = None) -> Shares:
    """Replicated shares of floor(z / divisor) (or that plus one) from the parties' additive shares z_i of a
    product, |z| < 2^bound_bits; divisor defaults to 2^frac_bits, bound_bits to product_bits (a larger one, up
    to ``truncation_fits``, serves a product already scaled by a public factor).

    The additive family's exact truncation (``protocols.additive.truncation._dealer_divide``) with party 0 as the
    dealer of parties 1 and 2, its mask chosen so that party 0's share of the product needs no message:
      1. Parties 0 and 1 expand f_1 = F(k_01), parties 0 and 2 f_2 = F(k_02).  Party 0 takes the truncation
         pair's mask as r = f_1 + f_2 - z_0 (uniform to party 1, which lacks f_2, and to party 2, which lacks
         f_1; party 0 knows it, as a dealer does) and sends party 2 its correction of the pair (s, u) for that r:
         s_2 = s - s_1 and u_2 = u - u_1, where (s_1, u_1) is party 1's share from a stream of k_01.
      2. Party 1 sends z_1 + f_1 to party 2, party 2 sends z_2 + f_2 to party 1, each masked by a key its
         receiver lacks.  Both now know c = z_1 + f_1 + z_2 + f_2 + O = z + r + O (O the public offset of the
         truncation), uniform whatever z is, and so q = floor(c/d) - O/d and b = [c < T]; party 0 sees nothing.
         The result is q - s + b u (as the additive protocol's two shares -s_i + b u_i, plus q, add up to).
      3. Short return (the divisor 2^f with f <= 16, every fixed-point rescale, where u = MSB(r) 2^(64-f) and
         u_i = m_i 2^(64-f) for f-bit shares m_1 + m_2 = MSB(r) mod 2^f): with f-bit lanes g_1 = F(k_01) and
         g_2 = F(k_02), the replicated components are y_1 = g_1 2^(64-f) - s_1 (parties 0 and 1),
         y_0 = g_2 2^(64-f) - s_2 (parties 0 and 2), and y_2 = q + (a_1 + a_2) 2^(64-f) (parties 1 and 2), where
         party i in {1, 2} sends the other its a_i = b m_i - g_i mod 2^f, f bits in a 16-bit lane, four to a
         word.  Party 0 holds (y_0, y_1) after step 1 and receives nothing; a_1 is masked by g_1, which party 2
         lacks, a_2 by g_2, which party 1 lacks.  The sum is q - s + b (m_1 + m_2) 2^(64-f) = q - s + b u.
      4. Any other divisor: parties 1 and 2 finish the additive protocol's two shares (one keeps q - s_1 + b u_1,
         the other -s_2 + b u_2) and ``from_two_of_two`` takes them back to replicated shares
         (``ReplicatedFamily.call_truncated`` stops after step 2 and hands the two-party sharing to a helper
         call, which needs nothing else: 1 round fewer).
    Rounds: 2.  Bytes per element: party 0 sends the correction, 10 for a divisor 2^f with f <= 16
    (``short_correction``: s_2 and a 16-bit share of MSB(r)), else 16; parties 1 and 2 send 8 each in step 2
    and 2 each in step 3 (8 in step 4): 30 in all (48 with step 4, 42 for a value divided by 2^f in a call
    that takes step 4 for another).  Party 0 sends no share of the product.
    Error: |result - z/d| < 1, as the additive family's truncation, for every |z| < 2^bound_bits; never a
    failure.
    """
    return fused_truncate_many(family, [(z, divisor, bound_bits)])[0]


def truncate_two_of_two(family: ReplicatedFamily, z: torch.Tensor, divisor: int | None = None,
                        bound_bits: int | None = None) -> torch.Tensor | None:
    """Steps 1, 2 and the first half of 4 of ``fused_truncate``: parties 1 and 2 get a two-party additive
    sharing of floor(z / d) (or that plus one), the view a helper call takes; party 0 gets None.  Rounds: 1.
    Bytes per element: party 0 sends 16 or 10 (the pair's correction, as ``fused_truncate``), parties 1 and 2
    send 8 each.  Error: as ``fused_truncate``."""
    results = truncate_many_two_of_two(family, [(z, divisor, bound_bits)])
    return None if results is None else results[0]


def fused_truncate_many(family: ReplicatedFamily,
                        items: Sequence[tuple[torch.Tensor, int | None, int | None]]) -> list[Shares]:
    """``fused_truncate`` of several values (z, divisor, bound_bits) in its 2 rounds: step 2's messages and
    step 3's return (step 4's, unless every divisor is 2^f with f <= 16) carry every value together.  Bytes:
    the sum of theirs, less the headers of the messages saved.  Error: each value's, as ``fused_truncate``.

    From ``2 * PIPELINE_BLOCK`` elements in all, the same 2 rounds run in blocks (``pipelined_pieces``): every
    block's masked values go out first, then each block is finished and sent back to replicated shares as
    soon as its peer's message is in, so that one block's encryption, transfer and decryption overlap the
    next block's (an 8 MB message took about 7 ms one way here, most of it CurveZMQ's cipher at each end).
    Same values, rounds and bytes per element; one message header more per block and message."""
    count = sum(z.numel() for z, _, _ in items)
    party = family.party
    short = all(short_correction_bits(party.encoding.scale if d is None else int(d)) for _, d, _ in items)
    if count < 2 * PIPELINE_BLOCK and not short:
        results = truncate_many_two_of_two(family, items)
        return family.from_two_of_two(results, [tuple(z.shape) for z, _, _ in items])
    sizes = [z.numel() for z, _, _ in items]
    if count < 2 * PIPELINE_BLOCK:
        pieces, groups = [(item, 0, size) for item, size in enumerate(sizes)], [list(range(len(sizes)))]
    else:
        pieces, groups = pipelined_pieces(sizes)
    flats = [z.reshape(-1) for z, _, _ in items]
    sent = [_send_masked(family, [(flats[item][start:stop], items[item][1], items[item][2])
                                  for item, start, stop in (pieces[index] for index in group)], short=short,
                         next_block=block > 0)
            for block, group in enumerate(groups)]
    party.rounds += 1
    converted: list[Shares] = []
    if short:
        if family.rank == 0:
            for mine in sent:
                party.next_tag()  # the return's tag, which parties 1 and 2 take
                assert isinstance(mine, list)
                converted.extend(mine)
        else:
            returning = [_send_lanes(family, pending, next_block=block > 0)
                         for block, pending in enumerate(sent) if isinstance(pending, _Masked)]
            for pending_return in returning:
                converted.extend(_finish_lanes(family, pending_return))
    else:
        for block, (group, pending) in enumerate(zip(groups, sent)):
            shapes = [(pieces[index][2] - pieces[index][1],) for index in group]
            assert not isinstance(pending, list)
            converted.extend(family.from_two_of_two(_finish_masked(family, pending), shapes, new_round=False,
                                                    next_block=block > 0))
    party.rounds += 1
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
    """Steps 1, 2 and the first half of 4 of ``fused_truncate`` for every (z, divisor, bound_bits) of ``items``
    in one round.
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
    assert not isinstance(pending, list)
    return _finish_masked(family, pending)


@dataclass
class _Masked:
    """Party 1's or 2's half-done ``truncate_many_two_of_two``: what step 3 needs once the peer's message is in."""

    plans: Sequence[tuple[torch.Tensor, int, int, np.uint64, tuple[tuple[int, ...], ...]]]
    streams: list[int]
    masked: torch.Tensor
    tag: int
    bounds: list[int]


def _send_masked(family: ReplicatedFamily, items: Sequence[tuple[torch.Tensor, int | None, int | None]], *,
                 short: bool = False, next_block: bool = False) -> _Masked | list[Shares] | None:
    """Steps 1 and 2 of ``fused_truncate`` without waiting for anything: party 0 sends its corrections (and is
    done: None, or with ``short``, its replicated pairs (y_0, y_1) of the items, step 3), parties 1 and 2
    their masked values.  Takes the tag and the pair streams, in the same order at every party.  ``short``:
    every item's divisor is 2^f with f <= 16 (``short_correction_bits``); ``next_block``: a later block of a
    pipelined round (its opening labelled with ``NEXT_BLOCK``)."""
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
        if short:
            lanes = [_lanes(family.pair[peer].ring(_LANES_DOMAIN | tag, -(-count // 4)), count) for peer in (1, 2)]
        outputs: list[Shares] = []
        for (_, d, *_), start, stop in zip(plans, bounds, bounds[1:]):
            stream = family.helper.next_stream()
            # party 1's shares of (s, u): the pair's words of the stream only (the dealer family's
            # request also carries shares of r, which the mask f_1 + f_2 - z_0 replaces here)
            first = family.helper.prgs[0].ring(stream, pair_words(stop - start, d))
            if short_correction_bits(d):
                f = short_correction_bits(d)
                if short:  # y_1 = g_1 2^(64-f) - s_1, before the correction is written over s_1
                    own = _top_bits(lanes[0][start:stop], f).sub_(first[: stop - start].cpu())
                wire = short_correction(mask[start:stop], first, d)
                family.helper.send_to_last(stream, wire)
                if short:  # y_0 = g_2 2^(64-f) - s_2
                    outputs.append((_top_bits(lanes[1][start:stop], f).sub_(wire[: stop - start].cpu()
                                                                             ).to(party.device),
                                    own.to(party.device)))
                continue
            first_pair = first.reshape(2, stop - start)
            s, u = truncation_values(mask[start:stop].cpu(), d)
            first_pair[0].neg_().add_(s.to(first_pair.device))
            first_pair[1].neg_().add_(u.to(first_pair.device))
            family.helper.send_to_last(stream, first_pair)
        return outputs if short else None
    assert family.sub is not None
    streams = [family.sub.next_dealer_request() for _ in plans]
    party.notify_opening("truncate" + (NEXT_BLOCK if next_block else ""), count * 8)
    masked = family._mask(0, _FUSED_DOMAIN, tag, count).add_(flat)
    party.send(3 - rank, tag, masked)
    return _Masked(plans, streams, masked, tag, bounds)


@dataclass
class _Returning:
    """Party 1's or 2's half-done step 3 of a short ``fused_truncate``: per item its f, q = floor(c/d) - O/d,
    its own component (party 1: y_1, party 2: y_0) and its lanes a_i, waiting for the peer's lanes."""

    items: list[tuple[int, np.ndarray, torch.Tensor]]
    lanes: np.ndarray
    bounds: list[int]
    tag: int


def _send_lanes(family: ReplicatedFamily, pending: _Masked, *, next_block: bool = False) -> _Returning:
    """Step 3 of a short ``fused_truncate`` up to its message, at party 1 or 2: take the pairs and the peer's
    masked values, open c, and send the peer a_i = b m_i - g_i mod 2^f per element (16-bit lanes, four to an
    int64 word)."""
    party, rank, sub = family.party, family.rank, family.sub
    assert sub is not None and sub.dealer_prg is not None
    plans, bounds = pending.plans, pending.bounds
    count = bounds[-1]
    if rank == 1:
        words = [sub.expand(sub.dealer_prg, stream, pair_words(z.numel(), d)).cpu()
                 for stream, (z, d, *_) in zip(pending.streams, plans)]
    else:
        words = [sub.recv(sub.dealer_id, stream, "helper truncation pair").cpu().reshape(-1)
                 for stream in pending.streams]
    lanes = _lanes(family.pair[0].ring(_LANES_DOMAIN | pending.tag, -(-count // 4)), count)  # on the CPU
    summed = party.recv(3 - rank, pending.tag, "truncate").add_(pending.masked)
    tag = party.next_tag()
    sent = np.zeros(4 * -(-count // 4), dtype=np.uint16)
    items = []
    for (_, d, offset, threshold, _), wire, start, stop in zip(plans, words, bounds, bounds[1:]):
        f, n = short_correction_bits(d), stop - start
        if wire.numel() != pair_words(n, d):
            raise ValueError(f"a short truncation pair for {n} elements has {pair_words(n, d)} words, "
                             f"not {wire.numel()}")
        opened = summed[start:stop].add_(offset)
        party.notify_learned("truncate", pending.tag, opened)
        unsigned = opened.cpu().numpy().view(np.uint64)
        share = wire[n:].numpy().view(np.uint16)[:n]  # m_i (party 1's raw lanes: their low f bits count)
        own = lanes[start:stop]  # g_i
        np.subtract(share * (unsigned < threshold), own, out=sent[start:stop])
        quotient = unsigned_divide(unsigned, d).view(np.int64) - np.int64(offset // d)
        items.append((f, quotient, _top_bits(own, f).sub_(wire[:n])))
        np.bitwise_and(sent[start:stop], np.uint16((1 << f) - 1), out=sent[start:stop])
    party.notify_opening("to replicated" + (NEXT_BLOCK if next_block else ""), len(sent) * 2)
    party.send(3 - rank, tag, torch.from_numpy(sent.view(np.int64)))
    return _Returning(items, sent, bounds, tag)


def _finish_lanes(family: ReplicatedFamily, pending: _Returning) -> list[Shares]:
    """The rest of step 3 at party 1 or 2: the peer's lanes in, y_2 = q + (a_1 + a_2) 2^(64-f); party 1's pair
    (y_1, y_2), party 2's (y_2, y_0), per item."""
    party, rank = family.party, family.rank
    received = party.recv(3 - rank, pending.tag, "to replicated").cpu().reshape(-1)
    if received.numel() != len(pending.lanes) // 4:
        raise ValueError(f"the lanes back to replicated shares of {pending.bounds[-1]} elements are "
                         f"{len(pending.lanes) // 4} words, not {received.numel()}")
    theirs = received.numpy().view(np.uint16)
    results: list[Shares] = []
    for (f, quotient, own), start, stop in zip(pending.items, pending.bounds, pending.bounds[1:]):
        total = pending.lanes[start:stop] + theirs[start:stop]  # modulo 2^16, so modulo 2^f too
        last = _top_bits(total, f).add_(torch.from_numpy(quotient)).to(party.device)
        results.append((own.to(party.device), last) if rank == 1 else (last, own.to(party.device)))
    return results


def _lanes(words: torch.Tensor, count: int) -> np.ndarray:
    """The first ``count`` 16-bit lanes of int64 ``words`` (four to a word), a uint16 view."""
    return words.cpu().numpy().view(np.uint16)[:count]


def _top_bits(lanes: np.ndarray, f: int) -> torch.Tensor:
    """Each lane's low f bits moved to the top of a fresh int64 (times 2^(64-f), modulo 2^64), on the CPU."""
    return torch.from_numpy((lanes.astype(np.uint64) << np.uint64(64 - f)).view(np.int64))


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
    if not count:  # no lanes to view (an empty slice may have a stride that ``view`` refuses)
        return words[:0], words[:0].clone()
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
