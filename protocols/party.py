"""One computing party's view of a session: its transport, its keys, its program counter and its counters.

Every party runs the same sequence of operations, so ``next_tag()`` yields the same number at the same point
of the program on every party; messages are matched by that tag, whatever order they arrive in.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from fixedpoint import FixedPoint
from network import Transport
from protocols.observe import Observer
from protocols.prg import AesCtrPrg

#: Tag 0 on every link is the key set-up; program tags and dealer request tags start at 1.
SETUP_TAG = 0

TRUNCATION_METHODS = ("dealer", "local")

#: Default size (bytes of one party's share) from which an opening goes reduce-scatter/all-gather: two rounds
#: but 2(n-1)/n instead of n-1 copies of the value sent per party.  Measured on 127.0.0.1 with CurveZMQ and
#: three parties (``python -m benchmarks.opening``: 1.6 vs 1.8 ms at 128 KiB, 5.4 vs 4.3 ms at 512 KiB), the
#: two-round form wins from about 256 KiB up; the network model puts a LAN's (0.2 ms, 10 Gbit/s) crossover
#: near 375 KiB.  Set ``gather_bytes`` per session to move it.
DEFAULT_GATHER_BYTES = 1 << 18

#: Default ceiling on the expected number of wrong truncations in one session (local-shift method only;
#: the dealer method is exact within the fixed-point bound).
DEFAULT_FAILURE_BUDGET = 1e-6


class TruncationBudgetError(RuntimeError):
    """The configured truncation would exceed the session's budget of expected failures."""


@dataclass
class Party:
    """Everything a protocol function needs to act as party ``rank`` of ``n_parties``.

    ``dealer_prg`` is keyed with the dealer (seed-compressed triples; None in a family without one);
    ``pair_prgs[j]`` with party j (input sharing).  The dealer is node ``n_parties`` of the transport.
    ``observers`` are told of every opening, every value this party learns, every dealer request and where the
    time goes.
    """

    rank: int
    n_parties: int
    transport: Transport
    encoding: FixedPoint
    dealer_prg: AesCtrPrg | None
    pair_prgs: Mapping[int, AesCtrPrg]
    truncation: str = "dealer"
    failure_budget: float = DEFAULT_FAILURE_BUDGET
    gather_bytes: int | None = DEFAULT_GATHER_BYTES
    #: Up to how many elements a comparison asks the dealer to answer online (``protocols.additive.helped``, 3
    #: rounds instead of 8); 0 (a dealer process, which never sees more than requests): never.
    helper_compare_max: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: Who watches this party (audit log, cost model, request recorder, profiler); see ``protocols.observe``.
    observers: list[Observer] = field(default_factory=list, repr=False)
    planned: deque = field(default_factory=deque, repr=False)
    #: Requests the last party sends the dealer as one plan at its next request (``protocols.replicated.helper``).
    plan_ahead: tuple = field(default=(), repr=False)
    pending_plan_acks: list[int] = field(default_factory=list, repr=False)
    rounds: int = 0
    truncated_elements: int = 0
    dealer_requests: int = 0
    _tag: int = field(default=SETUP_TAG, repr=False)

    def __post_init__(self) -> None:
        if self.n_parties < 2:
            raise ValueError("a session needs at least two computing parties")
        if not 0 <= self.rank < self.n_parties:
            raise ValueError(f"rank {self.rank} outside 0..{self.n_parties - 1}")
        if self.truncation not in TRUNCATION_METHODS:
            raise ValueError(f"truncation must be one of {TRUNCATION_METHODS}, got {self.truncation!r}")
        if self.truncation == "local" and self.n_parties != 2:
            raise ValueError("local-shift truncation is only correct for two parties; use truncation='dealer'")

    @property
    def dealer_id(self) -> int:
        return self.n_parties

    @property
    def last(self) -> int:
        """The party that receives the dealer's correction shares."""
        return self.n_parties - 1

    @property
    def others(self) -> tuple[int, ...]:
        return _OTHERS[self.n_parties][self.rank] if self.n_parties < len(_OTHERS) else tuple(
            i for i in range(self.n_parties) if i != self.rank)

    def next_tag(self) -> int:
        self._tag += 1
        return self._tag

    @property
    def tag(self) -> int:
        """The program counter: the last tag taken."""
        return self._tag

    @tag.setter
    def tag(self, value: int) -> None:
        self._tag = value

    def next_dealer_request(self) -> int:
        self.dealer_requests += 1
        return self.dealer_requests

    def send(self, dst: int, tag: int, tensor: torch.Tensor) -> None:
        self.transport.send(dst, tag, self._wire(tensor))

    def recv(self, src: int, tag: int, op: str) -> torch.Tensor:
        """The message ``src`` sent under ``tag``, as a tensor on this party's device."""
        array = self.transport.recv(src, tag, op=op)
        start = time.perf_counter()
        # A writable array is ours (see network.base.Transport.recv); a read-only one (a view of a large frame, or
        # the in-process transport's) is copied, since torch may write to what it wraps.
        tensor = torch.from_numpy(array if array.flags.writeable else np.array(array, copy=True))
        if self.device.type != "cpu":
            tensor = tensor.to(self.device)
        self._timed("serialization", start)
        return tensor

    def _wire(self, tensor: torch.Tensor) -> np.ndarray:
        start = time.perf_counter()
        if tensor.device.type != "cpu":
            tensor = tensor.to("cpu")
        wire = tensor.detach().contiguous().numpy()
        self._timed("serialization", start)
        return wire

    def expand(self, prg: AesCtrPrg, stream: int, count: int) -> torch.Tensor:
        """``prg.ring(stream, count)`` on this party's device (timed as "prg" when profiling)."""
        start = time.perf_counter()
        values = prg.ring(stream, count)
        self._timed("prg", start)
        return values if self.device.type == "cpu" else values.to(self.device)

    def _timed(self, category: str, start: float) -> None:
        if self.observers:
            elapsed = time.perf_counter() - start
            for observer in self.observers:
                observer.timed(category, elapsed)

    def notify_opening(self, op: str, nbytes: int) -> None:
        """Tell the observers an opening (a share, a reveal to one) of ``nbytes`` per party is starting."""
        for observer in self.observers:
            observer.opening(op, nbytes)

    def notify_learned(self, op: str, tag: int, value: torch.Tensor) -> None:
        """Tell the observers this party learned ``value``."""
        for observer in self.observers:
            observer.learned(op, tag, value)

    def notify_dealer_request(self, request: object) -> None:
        """Tell the observers this party asked the dealer for ``request``."""
        for observer in self.observers:
            observer.dealer_request(request)

    def uses_gather(self, nbytes: int) -> bool:
        """Whether an opening of ``nbytes`` per share goes reduce-scatter/all-gather (see ``open``)."""
        return self.n_parties > 2 and self.gather_bytes is not None and nbytes >= self.gather_bytes

    def open(self, tensor: torch.Tensor, op: str, *, xor: bool = False) -> torch.Tensor:
        """Open ``tensor``: return the sum (or, with ``xor``, the XOR) of all parties' shares.

        Two forms, picked by the share's size (the same on every party, so they always agree):
          * broadcast (below ``gather_bytes``): send our share to every other party, add what arrives.
            Rounds: 1.  Bytes sent per party: (n-1) S for a share of S bytes.
          * reduce-scatter/all-gather (from ``gather_bytes`` up, n > 2): cut the share into n near-equal
            chunks; 1. send chunk j to party j, add the chunks that arrive to ours: we hold chunk ``rank`` of
            the opened value; 2. send that chunk to every other party, receive theirs.
            Rounds: 2.  Bytes sent per party: 2 (n-1) S / n (rounded to whole elements).
        Every message is a share of the value or a part of the opened value, as in the broadcast form.
        """
        nbytes = tensor.numel() * tensor.element_size()
        self.notify_opening(op, nbytes)
        if self.uses_gather(nbytes):
            return self._gather_open(tensor, op, xor)
        tag = self.next_tag()
        wire = self._wire(tensor)
        for peer in self.others:
            self.transport.send(peer, tag, wire)
        total = tensor.clone()
        for peer in self.others:
            _combine_into(total, self._expect(peer, tag, op, tensor.dtype, tensor.numel(), tensor.shape), xor)
        self.rounds += 1
        self.notify_learned(op, tag, total)
        return total

    def _gather_open(self, tensor: torch.Tensor, op: str, xor: bool) -> torch.Tensor:
        flat = tensor.reshape(-1)
        chunks = torch.tensor_split(flat, self.n_parties)
        scatter_tag = self.next_tag()
        for peer in self.others:
            self.transport.send(peer, scatter_tag, self._wire(chunks[peer]))
        mine = chunks[self.rank].clone()
        for peer in self.others:
            _combine_into(mine, self._expect(peer, scatter_tag, op, tensor.dtype, mine.numel()), xor)
        gather_tag = self.next_tag()
        wire = self._wire(mine)
        for peer in self.others:
            self.transport.send(peer, gather_tag, wire)
        opened = [mine if peer == self.rank else self._expect(peer, gather_tag, op, tensor.dtype, chunks[peer].numel())
                  for peer in range(self.n_parties)]
        total = torch.cat(opened).reshape(tensor.shape)
        self.rounds += 2
        self.notify_learned(op, gather_tag, total)
        return total

    def _expect(self, peer: int, tag: int, op: str, dtype: torch.dtype, numel: int,
                shape: torch.Size | None = None) -> torch.Tensor:
        """Party ``peer``'s message under ``tag``, refused (ValueError) unless of our dtype and size (and
        ``shape``, when given: a broadcast share must have the shape of ours)."""
        share = self.recv(peer, tag, op)
        if share.dtype != dtype:
            raise ValueError(f"party {peer} sent {share.dtype} for {op}, expected {dtype}")
        if share.numel() != numel:
            raise ValueError(f"party {peer} sent {share.numel()} elements for {op}, expected {numel}")
        if shape is not None and share.shape != shape:
            raise ValueError(f"party {peer} sent shape {tuple(share.shape)} for {op}, expected {tuple(shape)}")
        return share if shape is not None else share.reshape(-1)

    def check_truncation_budget(self, count: int) -> None:
        """Refuse a local-shift truncation that would push expected failures over the session budget."""
        if self.truncation != "local":
            return
        expected = (self.truncated_elements + count) * self.encoding.local_shift_failure_probability()
        if expected > self.failure_budget:
            raise TruncationBudgetError(
                f"local-shift truncation of {self.truncated_elements + count} elements in this session has "
                f"{expected:.3g} expected failures (each {self.encoding.local_shift_failure_probability():.3g} "
                f"with int_bits={self.encoding.int_bits}, frac_bits={self.encoding.frac_bits}), over the budget "
                f"of {self.failure_budget:g}; use truncation='dealer' (exact) or lower int_bits"
            )


#: ``others`` for the common sizes, by party count and rank (a property every opening reads).
_OTHERS = tuple(tuple(tuple(i for i in range(n) if i != rank) for rank in range(n)) for n in range(9))


def _combine_into(total: torch.Tensor, share: torch.Tensor, xor: bool) -> None:
    if xor:
        total ^= share
    else:
        total += share


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or ValueError when this torch cannot use it (no CUDA, bad index...)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: {error}") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"shares can live on 'cpu' or 'cuda', not {resolved.type!r}")
    if not torch.cuda.is_available():
        raise ValueError("device='cuda' asked for, but this torch sees no CUDA device")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {resolved} asked for, but torch sees {torch.cuda.device_count()} CUDA devices")
    return resolved
