"""The replicated family ("replicated"): exactly three parties hold 2-out-of-3 replicated shares over Z_2^64
(Araki, Furukawa, Lindell, Nof, Ohara, CCS 2016; ABY3, Mohassel and Rindal, CCS 2018), semi-honest security
against any one corrupted party, and no dealer: products are local plus one resharing round, and what
comparisons and truncations need is made by the parties themselves (``helper``: party 0 makes it for parties
1 and 2).  Each party's ``Shares`` are its pair (x_i, x_{i+1}) of x = x_0 + x_1 + x_2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from fixedpoint import ring_matmul, ring_matmul_add
from network import Transport
from protocols.additive.truncation import MAX_BOUND_BITS
from protocols.family import Shares
from protocols.party import Party
from protocols.prg import AesCtrPrg
from protocols.replicated import shares as rep
from protocols.replicated.arithmetic import NEXT_BLOCK, fused_truncate, fused_truncate_many, truncate_two_of_two
from protocols.replicated.helper import Helper, RememberedPlans, SubParty, encode_end, run_remembered, sub_party
from protocols.setup import derived_key, pairwise_keys

#: Stream-id domains (top byte) on the pair keys, so that no two uses of one key can meet.
_SHARE_DOMAIN = 1 << 56
_ZERO_DOMAIN = 2 << 56
_CONVERT_DOMAIN = 3 << 56


def replicated_keys(transport: Transport, rank: int) -> dict[int, bytes]:
    """The pairwise keys of a three-party session without a dealer (one round)."""
    return pairwise_keys(transport, rank, rep.PARTIES)


class ReplicatedFamily:
    """The replicated family for one of the three parties.

    ``keys[j]`` is the key this party agreed with party j.  From each, independent keys are derived: one for the
    pair's masks (input sharing, sharings of zero, conversions), and the helper sub-session's (party 0's with
    each of parties 1 and 2, as a dealer's; parties 1 and 2's with each other).
    """

    name = "replicated"

    def __init__(self, party: Party, keys: dict[int, bytes]) -> None:
        if party.n_parties != rep.PARTIES:
            raise ValueError(f"the replicated family is for exactly 3 parties, not {party.n_parties}")
        self.party = party
        self.pair = {peer: AesCtrPrg(derived_key(key, b"replicated pair")) for peer, key in keys.items()}
        self.helper: Helper | None = None
        self.sub: SubParty | None = None
        self.plans = RememberedPlans()  # party 2's (see helper.RememberedPlans)
        self.max_bound_bits = MAX_BOUND_BITS
        if party.rank == 0:
            self.helper = Helper(party, [AesCtrPrg(derived_key(keys[peer], b"helper")) for peer in (1, 2)])
        else:
            self.sub = sub_party(party, AesCtrPrg(derived_key(keys[0], b"helper")),
                                 AesCtrPrg(derived_key(keys[3 - party.rank], b"helper pair")))

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.party.rank

    def _mask(self, peer: int, domain: int, tag: int, count: int) -> torch.Tensor:
        """The stream this party and ``peer`` both expand for (domain, tag)."""
        return self.party.expand(self.pair[peer], domain | tag, count)

    # -- holding secrets --------------------------------------------------------------------------------
    def share(self, encoded: torch.Tensor | None, owner: int) -> Shares:
        """Secret-share the owner's value.

        Steps (owner o): 1. x_o = F(k_{o,o-1}), x_{o+1} = F(k_{o,o+1}) (each known to the owner and one other
        party); 2. the owner sends x_{o+2} = x - x_o - x_{o+1} to both other parties.  Each ends with its pair.
        Rounds: 1.  Bytes: 8 k to each of the two others, from the owner.  Error: none.  A receiver sees
        x_{o+2}, masked by the component it lacks."""
        if not 0 <= owner < rep.PARTIES:
            raise ValueError(f"owner must be a party rank in 0..2, got {owner}")
        party, rank = self.party, self.rank
        tag = party.next_tag()
        stream = _SHARE_DOMAIN | tag
        after, before = rep.next_rank(owner), rep.previous_rank(owner)
        if rank == owner:
            if encoded is None:
                raise ValueError(f"party {owner} owns this input and must pass a value, not None")
            value = encoded.to(party.device)
            first = party.expand(self.pair[before], stream, value.numel()).reshape(value.shape)
            second = party.expand(self.pair[after], stream, value.numel()).reshape(value.shape)
            third = rep.split(value, first, second)[2]
            party.notify_opening("share", value.numel() * 8)
            for peer in (after, before):
                party.send(peer, tag, third)
            parts: Shares = (first, second)
        else:
            if encoded is not None:
                raise ValueError(f"party {rank} does not own this input (owner is {owner}); pass None")
            party.notify_opening("share", 0)
            third = party.recv(owner, tag, "share")
            mine = party.expand(self.pair[owner], stream, third.numel()).reshape(third.shape)
            parts = (mine, third) if rank == after else (third, mine)
        party.rounds += 1
        return parts

    def public(self, encoded: torch.Tensor) -> Shares:
        """A public value v as x_0 = v, x_1 = x_2 = 0: party 0 holds (v, 0), party 2 (0, v).  Local."""
        value = encoded.to(self.party.device)
        zero = torch.zeros_like(value)
        return {0: (value.clone(), zero), 1: (zero, zero.clone()), 2: (zero, value.clone())}[self.rank]

    def add_public(self, x: Shares, encoded: torch.Tensor) -> Shares:
        """x + v: v joins x_0 (party 0's first part, party 2's second).  Local; broadcasts like torch."""
        value = encoded.to(self.party.device)
        first = x[0] + value if self.rank == 0 else x[0] + torch.zeros_like(value)
        second = x[1] + value if self.rank == 2 else x[1] + torch.zeros_like(value)
        return first, second

    def reveal(self, x: Shares, to: int | None = None) -> torch.Tensor | None:
        """Open x: party i gets the component it lacks, x_{i+2}, from party i + 1 (its second part).
        Rounds: 1.  Bytes: 8 k per party to all, 8 k from one party to one.  Error: none."""
        party, rank = self.party, self.rank
        tag = party.next_tag()
        party.rounds += 1
        receiver_of_mine = rep.previous_rank(rank)
        if to is not None and not 0 <= to < rep.PARTIES:
            raise ValueError(f"reveal target must be a party rank in 0..2, got {to}")
        sends = to is None or to == receiver_of_mine
        party.notify_opening("reveal" if to is None else "reveal to one", x[1].numel() * 8 if sends else 0)
        if sends:
            party.send(receiver_of_mine, tag, x[1])
        if to is not None and to != rank:
            return None
        missing = party.recv(rep.next_rank(rank), tag, "reveal")
        if missing.shape != x[0].shape:
            missing = missing.reshape(x[0].shape)
        total = rep.recombine((x[0], x[1]), missing)
        party.notify_learned("reveal", tag, total)
        return total

    def rerandomize(self, x: Shares) -> Shares:
        """Fresh shares of x: reshare the additive view x_i (``reshare``).  Rounds: 1.  Bytes: 8 k."""
        return self.reshare(x[0])

    def local(self, x: Shares) -> torch.Tensor:
        return torch.stack([x[0], x[1]])

    def from_local(self, local: torch.Tensor) -> Shares:
        if local.dim() < 1 or local.shape[0] != 2:
            raise ValueError("a replicated share file holds both parts of a party (leading dimension 2)")
        return local[0], local[1]

    # -- arithmetic -------------------------------------------------------------------------------------
    def reshare(self, z: torch.Tensor) -> Shares:
        """Replicated shares of the sum of the three parties' additive shares z_i.

        Steps: 1. a_i = F(k_{i,i+1}) - F(k_{i-1,i}), a sharing of zero from the pair keys; 2. send w_i = z_i + a_i
        to party i - 1 (which needs it as its second part); 3. hold (w_i, w_{i+1}).
        Rounds: 1.  Bytes: 8 k per party.  Error: none.  w_i is uniform to its receiver (a_i hides it)."""
        party, rank = self.party, self.rank
        tag = party.next_tag()
        count = z.numel()
        zero = rep.zero_share(self._mask(rep.next_rank(rank), _ZERO_DOMAIN, tag, count),
                              self._mask(rep.previous_rank(rank), _ZERO_DOMAIN, tag, count)).reshape(z.shape)
        mine = z + zero
        party.notify_opening("reshare", count * 8)
        party.send(rep.previous_rank(rank), tag, mine)
        theirs = party.recv(rep.next_rank(rank), tag, "reshare").reshape(z.shape)
        party.rounds += 1
        return mine, theirs

    def mul(self, x: Shares, y: Shares, *, rescale: bool = True) -> Shares:
        """x * y (broadcasting): each party's additive share of the product from its pairs
        (``shares.local_product``), then ``reshare`` (1 round, 8 bytes per output element per party), or with
        ``rescale`` the fused truncation (``arithmetic.fused_truncate``: 2 rounds).  Error: exact before
        rescaling; rescaling adds less than one unit."""
        z = rep.local_product((x[0], x[1]), (y[0], y[1]), self.rank)
        return fused_truncate(self, z) if rescale else self.reshare(z)

    def matmul(self, x: Shares, y: Shares, *, rescale: bool = True) -> Shares:
        """x @ y as ``mul``, with ring matmuls: only the output is reshared, 8 m p bytes per party for
        (m x k)(k x p), never the operands."""
        z = rep.local_product((x[0], x[1]), (y[0], y[1]), self.rank, ring_matmul, ring_matmul_add)
        return fused_truncate(self, z) if rescale else self.reshare(z)

    def truncate(self, x: Shares, divisor: int | None = None) -> Shares:
        """floor(x / divisor) (or that plus one), for |x| < 2^product_bits: the fused truncation of products
        (``fused_truncate``) on the additive view x = x_0 + x_1 + x_2 (each party's first part), which is the
        additive family's exact truncation with party 0 as the dealer of parties 1 and 2.
        Rounds: 2.  Bytes per element: for a divisor 2^f with f <= 16, about 10 from each party (party 0 its
        correction, parties 1 and 2 their masked shares and a 16-bit lane back to replicated shares); for any
        other, party 0 sends 16, parties 1 and 2 16 each.
        Error: |result - x/divisor| < 1; never a failure.  (It was a helper call, ``protocols.additive.truncate``
        in the sub-session: the same rounds and bytes, and party 2's request and end marker on top.)"""
        divisor = self.party.encoding.scale if divisor is None else int(divisor)
        if divisor < 1:
            raise ValueError(f"divisor must be a positive integer, got {divisor}")
        if divisor == 1 or x[0].numel() == 0:
            return x[0].clone(), x[1].clone()
        return fused_truncate(self, x[0], divisor)

    def product(self, x: Shares, y: Shares, *, matmul: bool = False) -> torch.Tensor:
        """Each party's additive share of x * y (or x @ y) from its pairs (``shares.local_product``).  Local."""
        if matmul:
            return rep.local_product((x[0], x[1]), (y[0], y[1]), self.rank, ring_matmul, ring_matmul_add)
        return rep.local_product((x[0], x[1]), (y[0], y[1]), self.rank)

    def additive(self, x: Shares) -> torch.Tensor:
        """x_i, this party's first part: x = x_0 + x_1 + x_2 is an additive sharing."""
        return x[0]

    def truncate_additive(self, z: torch.Tensor, divisor: int, bound_bits: int) -> Shares:
        """``fused_truncate`` of the additive shares z_i (2 rounds)."""
        return fused_truncate(self, z, divisor, bound_bits)

    #: ``fused_truncate_many`` takes any number of values in the 2 rounds of one.
    settles_together = True

    def truncate_additive_many(self, items: Sequence[tuple[torch.Tensor, int, int]]) -> list[Shares]:
        """``fused_truncate_many``: every value in 2 rounds."""
        return fused_truncate_many(self, items)

    def preprocess(self, plan: list, times: int, *, wait: bool = True) -> None:
        """Nothing to do ahead of time: party 0 makes the helper sub-session's material when it is asked."""

    def call(self, function: Callable[..., Any], *inputs: Shares, **options: Any) -> Any:
        """Run ``function`` (a protocol of additive shares) in the helper sub-session (``helper``): parties 1
        and 2 on their two-party view of the inputs, party 0 as its dealer; the outputs come back as
        replicated shares in one more round.  Returns Shares, or a tuple of them for a tuple result.  Party 2
        sends a repeated call's dealer requests as one plan (``helper.RememberedPlans``)."""
        if self.helper is not None:
            converted, is_tuple = self._serve()
        else:
            views = [rep.two_of_two((x[0], x[1]), self.rank) for x in inputs]
            converted, is_tuple = self._run_sub(function, views, options)
        return tuple(converted) if is_tuple else converted[0]

    def call_truncated(self, function: Callable[..., Any], z: torch.Tensor, divisor: int, bound_bits: int,
                       base: Shares | None = None, **options: Any) -> tuple[Shares, Any]:
        """(x, ``call(function, x)``) for x = floor(z / divisor) (or that plus one) + base.

        ``truncate_two_of_two`` leaves parties 1 and 2 the two-party view of x that the call runs on, and x goes
        back to replicated shares with the call's outputs, in the same message: the truncation's own return
        round is saved.  Rounds: 1 + the call's (2 + the call's when truncating first).  Bytes: the same as
        truncating first.  Error: the truncation's, then the call's."""
        view = truncate_two_of_two(self, z, divisor, bound_bits)
        if self.helper is not None:
            converted, is_tuple = self._serve()
        else:
            assert view is not None
            if base is not None:
                base_view = rep.two_of_two((base[0], base[1]), self.rank)
                assert base_view is not None
                view = view + base_view
            # A copy comes back as the settled input, whatever the call does with its own view.
            converted, is_tuple = self._run_sub(function, [view], options, carried=view.clone())
        settled, outputs = converted[-1], converted[:-1]
        return settled, tuple(outputs) if is_tuple else outputs[0]

    def _serve(self) -> tuple[list[Shares], bool]:
        """Party 0's side of a helper call: deal until the end marker, then the outputs' return."""
        assert self.helper is not None
        party = self.party
        shapes, is_tuple, tag, rounds = self.helper.serve()
        party.tag = max(party.tag, tag)
        party.rounds += rounds
        return self.from_two_of_two(None, shapes), is_tuple

    def _run_sub(self, function: Callable[..., Any], views: list[torch.Tensor | None], options: dict[str, Any],
                 carried: torch.Tensor | None = None) -> tuple[list[Shares], bool]:
        """Parties 1 and 2: ``function`` on the two-party views, then its outputs (and ``carried``, a two-party
        value returned with them, last) back to replicated shares in one round."""
        assert self.sub is not None
        party, sub = self.party, self.sub
        before = sub.rounds
        if self.rank == 2:
            key = RememberedPlans.key(function, [tuple(view.shape) for view in views if view is not None],
                                      options)
            result = run_remembered(sub, self.plans, key, lambda: function(sub, *views, **options))
        else:
            result = function(sub, *views, **options)
        outputs = list(result) if isinstance(result, tuple) else [result]
        if carried is not None:
            outputs.append(carried)
        rounds = sub.rounds - before
        stream = sub.next_dealer_request()  # the end marker's stream, on both of the sub-session's parties
        shapes = [tuple(output.shape) for output in outputs]
        if self.rank == 2:
            end = encode_end(shapes, isinstance(result, tuple), party.tag, rounds)
            party.notify_opening("helper end", end.numel() * 8)
            sub.send(sub.dealer_id, stream, end)
        party.rounds += rounds
        return self.from_two_of_two(outputs, shapes), isinstance(result, tuple)

    def from_two_of_two(self, values: Sequence[torch.Tensor] | None, shapes: Sequence[tuple[int, ...]], *,
                        new_round: bool = True, next_block: bool = False) -> list[Shares]:
        """Replicated shares of values held two-party additively by parties 1 (a) and 2 (b); party 0 passes
        None and the shapes.

        Steps: 1. c_0 = F(k_02) (parties 0 and 2 expand it), m = F(k_12) (parties 1 and 2);
        2. party 1 sends c_1 = a + m to party 0, party 2 sends c_2 = b - c_0 - m to party 1;
        3. party i holds (c_i, c_{i+1}): c_0 + c_1 + c_2 = a + b.
        Rounds: 1 (for every value together).  Bytes: 8 k from party 1 (to party 0) and from party 2 (to
        party 1).  Error: none.  Each message is masked by a key its receiver lacks (k_12 from party 0, k_02
        from party 1).  Party 2, the busiest party of a product, receives nothing and is done once it has
        sent; parties 0 and 1 each decrypt one message, at the same time.  (It was party 1 -> 2 -> 0, with
        party 2 receiving; both messages to party 0 made it decrypt twice as much, one after the other, and
        measured slower.)  ``new_round=False``: one block of a round the caller counts (a pipelined
        ``fused_truncate_many``), and ``next_block`` a later block of it (its opening labelled so).
        """
        party, rank = self.party, self.rank
        tag = party.next_tag()
        sizes = [int(torch.Size(shape).numel()) for shape in shapes]
        count = sum(sizes)
        if rank == 0:
            pairs = (self._mask(2, _CONVERT_DOMAIN, tag, count), party.recv(1, tag, "to replicated").reshape(-1))
        else:
            assert values is not None
            flat = (torch.cat([value.reshape(-1) for value in values]) if values
                    else torch.zeros(0, dtype=torch.int64, device=party.device))
            shift = self._mask(3 - rank, _CONVERT_DOMAIN, tag, count)
            party.notify_opening("to replicated" + (NEXT_BLOCK if next_block else ""), count * 8)
            if rank == 1:
                mine = flat.add(shift)
                party.send(0, tag, mine)
                pairs = (mine, party.recv(2, tag, "to replicated").reshape(-1))
            else:
                first = self._mask(0, _CONVERT_DOMAIN, tag, count)
                mine = flat.sub(first).sub_(shift)
                party.send(1, tag, mine)
                pairs = (mine, first)
        if new_round:
            party.rounds += 1
        results: list[Shares] = []
        at = 0
        for shape, size in zip(shapes, sizes):
            results.append((pairs[0][at : at + size].reshape(shape), pairs[1][at : at + size].reshape(shape)))
            at += size
        return results
