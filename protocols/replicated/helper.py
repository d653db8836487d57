"""The helper sub-session: how the replicated family runs comparisons, truncations and approximations without
a dealer.

Any two of the three parties hold a replicated secret between them, so parties 1 and 2 see it, for free, as a
two-party additive sharing (party 1: x_1 + x_2, party 2: x_0; ``shares.two_of_two``).  They run the additive
family's protocol for two parties on it, and party 0 plays that protocol's dealer: it makes every correlated
value (Beaver and binary triples, truncation pairs, masked bits) from keys it shares with each of them, and sends
party 2 the single correction share, exactly as the dealer process of the additive family does.  This is secure
against any one corrupted party (the replicated family's threat model): party 0 sees the kinds and shapes of
what it is asked for, as the dealer does (and, for a comparison it answers online, masked residues: below), and
parties 1 and 2 see what they would see with a dealer that colludes with neither, which holds when at most one
party is corrupted.  The two-party result goes back to
replicated shares in one round (``ReplicatedFamily.from_two_of_two``).

Traffic with party 0 in its helper role uses tags offset by ``HELPER_TAG``, apart from program tags; the
sub-session's parties take their program tags from the main party, so tags stay in step everywhere.

Comparisons of up to ``HELPED_COMPARE_MAX`` elements ask party 0 for one thing more than a dealer gives: an
answer online (``protocols.additive.helped``).  It receives test values that are uniform to it but for one bit,
masked by a coin of parties 1 and 2, and sends party 2 a share of the result: 3 rounds instead of the 8 of the
comparison tree, within the same threat model (one corrupted party).

Party 2 asks for each correlated value with one small message.  A call it has made before on the same shapes
(every step of a training loop) asks for all of them in one plan, in its first request's message
(``RememberedPlans``), and party 0 sends every correction at once: 12 messages fewer per sigmoid, no wait on
party 0 for correlated values inside the call (only for the answers of its comparisons, which it gives after
sending every correction), and nothing party 0 learns that it would not learn otherwise.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from network import ProtocolError, Transport, TransportStats
from protocols.additive.dealer import COMPARE, PLAN, PlanMismatch, Request, dealer_correction, decode_plan
from protocols.additive.helped import ANSWER_TAG, compare_material, helper_verdict
from protocols.party import Party
from protocols.prg import AesCtrPrg

#: Added to the tags of helper traffic (requests, corrections, the end marker) on the links with party 0.
HELPER_TAG = 1 << 62
#: First word of the message that ends a sub-session call (a dealer request kind cannot be this).
END = 98
#: Calls whose dealer requests party 2 remembers (least recently used dropped first).
REMEMBERED_CALLS = 64
#: A call is planned ahead only if party 0's corrections for it total at most this many elements (32 MiB), so
#: what waits in party 2's mailbox stays small (a helper comparison's corrections are bytes, counted as
#: elements all the same: the cap errs on the safe side).
PLAN_AHEAD_ELEMENTS = 1 << 22
#: Up to how many elements one comparison of the sub-session asks party 0 to answer online (3 rounds,
#: ``protocols.additive.helped``); larger ones take the 8-round tree of ``ltz``, which sends less than half
#: the bytes and does less local work per element.  Measured on 127.0.0.1 (2 cores, CurveZMQ): x > y in 4.1
#: against 5.5 ms at 1,000 elements, 8.5 against 4.5 ms at 2,048; a sigmoid of 128 values (640 comparisons)
#: 5.7 to 6.7 against 6.5 to 7.6 ms.  Where a round costs more than here (a LAN, a WAN) the crossover is higher.
HELPED_COMPARE_MAX = 1 << 10
#: Sub-session node -> main node: the two-party session's parties 0 and 1 are parties 1 and 2, its dealer
#: (node 2 of the sub-session) is party 0.
_NODES = {0: 1, 1: 2, 2: 0}


class HelperTransport:
    """The transport of the sub-session's parties: the main party's transport (whatever it is at the time of
    each call) with nodes renamed (see ``_NODES``) and the dealer's tags moved past ``HELPER_TAG``.  Closing it
    does nothing; the session closes the real one."""

    def __init__(self, main: Party, rank: int) -> None:
        self._main = main
        self._rank = rank

    @property
    def _transport(self) -> Transport:
        return self._main.transport

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(node for node in _NODES if node != self._rank)

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        self._transport.send(_NODES[dst], tag + (HELPER_TAG if dst == 2 else 0), array)

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        return self._transport.recv(_NODES[src], tag + (HELPER_TAG if src == 2 else 0), op=op)

    def close(self, *, abort: bool = False, reason: str = "") -> None:
        """Nothing: the main transport belongs to the session."""


@dataclass
class SubParty(Party):
    """A party of the two-party sub-session; its program tags are the main party's.  While ``recording`` is a
    list, every dealer request it makes is appended to it."""

    main: Party | None = field(default=None, repr=False)
    recording: list[Request] | None = field(default=None, repr=False)

    def next_tag(self) -> int:
        assert self.main is not None
        return self.main.next_tag()

    def notify_dealer_request(self, request: object) -> None:
        if self.recording is not None:
            assert isinstance(request, Request)
            self.recording.append(request)
        super().notify_dealer_request(request)


class RememberedPlans:
    """Party 2's memory of the dealer requests each kind of call made, so that a call that repeats sends them to
    party 0 as one plan at its first request instead of one request per message (a training loop repeats the
    same calls on the same shapes every step).

    A call's key is the function, the shapes of its inputs and its options; a key that cannot be hashed, or a
    function defined inside another (a new object, maybe a different program, each time), is not remembered.
    Requests depend on nothing else: control flow on shares cannot depend on their values.  If a call asks for
    something else than it did before all the same, ``Correlated`` raises ``PlanMismatch`` at the first
    difference (party 0 has then made corrections nobody uses, and the session cannot go on), never a wrong value.
    """

    def __init__(self, capacity: int = REMEMBERED_CALLS) -> None:
        self._capacity = capacity
        self._plans: OrderedDict[Hashable, tuple[Request, ...]] = OrderedDict()

    @staticmethod
    def key(function: Callable[..., Any], shapes: Sequence[tuple[int, ...]], options: dict[str, Any]
            ) -> Hashable | None:
        """The call's key, or None when it must not be remembered."""
        if "<" in getattr(function, "__qualname__", "<"):  # a lambda or a local function
            return None
        key = (function, tuple(shapes), tuple(sorted(options.items())))
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def get(self, key: Hashable) -> tuple[Request, ...] | None:
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
        return plan

    def remember(self, key: Hashable, requests: Sequence[Request]) -> None:
        """Keep ``requests`` for ``key`` if party 0's corrections for them are small enough to send ahead."""
        if sum(math.prod(request.output_shapes()[2]) for request in requests) > PLAN_AHEAD_ELEMENTS:
            return
        self._plans[key] = tuple(requests)
        self._plans.move_to_end(key)
        while len(self._plans) > self._capacity:
            self._plans.popitem(last=False)


def run_remembered(sub: SubParty, plans: RememberedPlans, key: Hashable | None,
                   run: Callable[[], Any]) -> Any:
    """Party 2's side of a call: ``run()`` with its requests planned ahead when ``key`` was seen before, or
    recorded for next time; PlanMismatch if it asked for fewer requests than remembered."""
    plan = plans.get(key) if key is not None else None
    if plan:
        sub.plan_ahead = plan
        result = run()
        if sub.plan_ahead or sub.planned:
            left = len(sub.plan_ahead) + len(sub.planned)
            sub.plan_ahead = ()
            sub.planned.clear()
            raise PlanMismatch(f"this call asked party 0 for {len(plan) - left} dealer requests, {left} fewer than "
                               "the same call did before")
        return result
    if key is None:
        return run()
    sub.recording = []
    try:
        result = run()
        plans.remember(key, sub.recording)
    finally:
        sub.recording = None
    return result


def sub_party(main: Party, dealer_prg: AesCtrPrg, partner_prg: AesCtrPrg) -> SubParty:
    """Party 1's or party 2's end of the sub-session (ranks 0 and 1 there; the dealer is node 2)."""
    rank = main.rank - 1
    return SubParty(rank=rank, n_parties=2, transport=HelperTransport(main, rank), encoding=main.encoding,
                    dealer_prg=dealer_prg, pair_prgs={1 - rank: partner_prg}, truncation="dealer",
                    gather_bytes=None, helper_compare_max=HELPED_COMPARE_MAX, device=main.device,
                    observers=main.observers, main=main)


class Helper:
    """Party 0's side: the sub-session's dealer.  ``prgs`` are its keys with party 1 and party 2, in that order
    (the sub-session's parties 0 and 1)."""

    def __init__(self, main: Party, prgs: Sequence[AesCtrPrg]) -> None:
        self.main = main
        self.prgs = list(prgs)
        self.stream = 0

    def next_stream(self) -> int:
        """The next dealer stream, in step with the sub-session's parties' request counters."""
        self.stream += 1
        return self.stream

    def send_to_last(self, stream: int, array: torch.Tensor) -> None:
        """A correction for stream ``stream`` to the sub-session's last party (party 2)."""
        wire = array.detach().cpu().contiguous().numpy()
        self.main.notify_opening("helper correction", wire.nbytes)
        self.main.transport.send(2, HELPER_TAG + stream, wire)

    def serve(self) -> tuple[list[tuple[int, ...]], bool, int, int]:
        """Answer party 2's requests (one per message, or a plan of the call's requests in the first) until it
        ends the call; returns (output shapes, whether the result is a
        tuple, party 2's final program tag, the rounds the call took), which party 0 needs to stay in step."""
        while True:
            stream = self.next_stream()
            raw = self.main.transport.recv(2, HELPER_TAG + stream, op="helper request")
            values = np.asarray(raw, dtype=np.int64).reshape(-1)
            if values.size and int(values[0]) == END:
                return decode_end(values)
            if values.size and int(values[0]) == PLAN:  # the rest of the call's requests, this stream's first
                requests, times = decode_plan(values)
                if times != 1 or not requests:
                    raise ProtocolError("a helper plan holds the requests of one call, at least one")
                # Every correction first, then the comparisons' answers in order: no correction waits on a test.
                comparisons = []
                for index, request in enumerate(requests):
                    if index:
                        stream = self.next_stream()
                    comparisons += self.correct(stream, request)
                for comparison in comparisons:
                    self.answer(*comparison)
                continue
            for comparison in self.correct(stream, Request.decode(values)):
                self.answer(*comparison)

    def correct(self, stream: int, request: Request) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Make and send request ``stream``'s correction for party 2; for a helper comparison, return what its
        answer needs (stream, r, party 1's answer share g), else nothing."""
        if request.kind != COMPARE:
            self.send_to_last(stream, dealer_correction(self.prgs, stream, request))
            return []
        r, g, correction = compare_material(self.prgs, stream, request)
        self.send_to_last(stream, correction)
        return [(stream, r, g)]

    def answer(self, stream: int, r: torch.Tensor, g: torch.Tensor) -> None:
        """Wait for both parties' test values of the helper comparison ``stream`` (mask ``r``) and send party 2
        its share of the answer (``protocols.additive.helped``)."""
        tag = HELPER_TAG + ANSWER_TAG + stream
        tests = [self.main.transport.recv(node, tag, op="helper comparison") for node in (1, 2)]
        verdict, share = helper_verdict(tests[0], tests[1], r, g)
        self.main.notify_learned("helper comparison", tag, verdict.to(torch.uint8))
        wire = share.contiguous().numpy()
        self.main.notify_opening("helper answer", wire.nbytes)
        self.main.transport.send(2, tag, wire)


def encode_end(shapes: Sequence[Sequence[int]], is_tuple: bool, tag: int, rounds: int) -> torch.Tensor:
    """The end marker of a call: [END, tag, rounds, is_tuple, outputs, (ndim, *shape) per output]."""
    words = [END, tag, rounds, int(is_tuple), len(shapes)]
    for shape in shapes:
        words += [len(shape), *shape]
    return torch.tensor(words, dtype=torch.int64)


def decode_end(values: np.ndarray) -> tuple[list[tuple[int, ...]], bool, int, int]:
    """The inverse of ``encode_end``; ProtocolError on anything malformed."""
    try:
        tag, rounds, is_tuple, count = int(values[1]), int(values[2]), int(values[3]), int(values[4])
        shapes, at = [], 5
        for _ in range(count):
            ndim = int(values[at])
            if not 0 <= ndim <= 8:
                raise ValueError("ndim")
            shape = tuple(int(d) for d in values[at + 1 : at + 1 + ndim])
            if len(shape) != ndim or any(d < 0 for d in shape):
                raise ValueError("shape")
            shapes.append(shape)
            at += 1 + ndim
        if at != len(values) or tag < 0 or rounds < 0 or is_tuple not in (0, 1):
            raise ValueError("length")
    except (IndexError, ValueError):
        raise ProtocolError("malformed end of a helper call") from None
    return shapes, bool(is_tuple), tag, rounds
