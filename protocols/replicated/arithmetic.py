"""Products of replicated secrets with their fixed-point truncation fused into the resharing round."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from protocols.additive.dealer import TRUNC, Request, dealer_material, expand_parts
from protocols.additive.truncation import finish_divide, wrap_constants
from protocols.family import Shares

if TYPE_CHECKING:
    from protocols.replicated.family import ReplicatedFamily

#: Stream-id domain (top byte) of the masks of the fused truncation on the pair keys.
_FUSED_DOMAIN = 4 << 56


def fused_truncate(family: ReplicatedFamily, z: torch.Tensor, divisor: int | None = None) -> Shares:
    """Replicated shares of floor(z / divisor) (or that plus one) from the parties' additive shares z_i of a
    product, |z| < 2^product_bits; divisor defaults to 2^frac_bits.

    The additive family's exact truncation (``protocols.additive.truncation._dealer_divide``) with party 0 as the dealer
    of parties 1 and 2, its opening merged with the gathering of the three z_i:
      1. Party 0 draws the truncation pair's mask r (from its helper keys with parties 1 and 2; it knows r, as
         a dealer does) and sends z_0 + r - F(k_02) to party 1 and z_0 + r - F(k_01) to party 2, plus party 2's
         correction of the pair; party 1 sends z_1 + F(k_01) to party 2 and party 2 sends z_2 + F(k_02) to
         party 1.  Parties 1 and 2 now both know c = z + O + r (O the public offset of the truncation), which
         is uniform whatever z is, and neither learns anything else: each message is masked by r or by a pair
         key its receiver lacks.
      2. Parties 1 and 2 finish the truncation as the two parties of the additive protocol do (one keeps
         floor(c/d) - O/d - s_1 + [c < T] u_1, the other -s_2 + [c < T] u_2): a two-party sharing of the result.
      3. ``from_two_of_two``: back to replicated shares.
    Rounds: 2.  Bytes per element: party 0 sends 8 + 8 and a 16-byte correction, parties 1 and 2 send 8 each in
    step 1 and 8 each in step 3.  Error: |result - z/d| < 1, as the additive family's truncation, for every
    |z| < 2^product_bits; never a failure.
    """
    party, rank = family.party, family.rank
    divisor = party.encoding.scale if divisor is None else int(divisor)
    offset, threshold = wrap_constants(party.encoding.product_bits, divisor)
    flat = z.reshape(-1)
    count = flat.numel()
    request = Request(TRUNC, divisor, (count,))
    shapes = request.output_shapes()
    tag = party.next_tag()
    if rank == 0:
        assert family.helper is not None
        stream = family.helper.next_stream()
        mask, correction = dealer_material(family.helper.prgs, stream, request)
        masked = flat + mask.to(party.device)
        party.notify_opening("truncate", count * 8)
        party.send(1, tag, masked - family._mask(2, _FUSED_DOMAIN, tag, count))
        party.send(2, tag, masked - family._mask(1, _FUSED_DOMAIN, tag, count))
        family.helper.send_to_last(stream, correction)
        party.rounds += 1
        return family.from_two_of_two(None, [tuple(z.shape)])[0]
    assert family.sub is not None
    sub = family.sub
    stream = sub.next_dealer_request()
    assert sub.dealer_prg is not None
    party.notify_opening("truncate", count * 8)
    if rank == 1:
        _, _, pair = expand_parts(sub.dealer_prg, stream, shapes, sub)
        party.send(2, tag, flat + family._mask(0, _FUSED_DOMAIN, tag, count))
    else:
        expand_parts(sub.dealer_prg, stream, shapes[:2], sub)  # the stream's a and b, as a dealt party would
        party.send(1, tag, flat + family._mask(0, _FUSED_DOMAIN, tag, count))
        pair = sub.recv(sub.dealer_id, stream, "helper truncation pair").reshape(shapes[2])
    opened = flat + party.recv(0, tag, "truncate") + party.recv(3 - rank, tag, "truncate") + offset
    party.rounds += 1
    party.notify_learned("truncate", tag, opened)
    unsigned = opened.cpu().numpy().view(np.uint64)
    result = finish_divide(unsigned, pair[0], pair[1], divisor, offset, threshold, first=rank == 1)
    return family.from_two_of_two([result.reshape(z.shape)], [tuple(z.shape)])[0]
