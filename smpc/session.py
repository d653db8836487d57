"""The user's handle on one party of a secure computation: ``Session``.

A session owns this party's transport, keys and counters.  There is no global session: every SharedTensor
carries the session it belongs to, so one process can host several sessions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch

import protocols
from fixedpoint import FixedPoint
from network import Roster, Transport, abort_reason
from protocols import Party
from protocols.additive.family import AdditiveFamily
from protocols.family import Family
from protocols.replicated import ReplicatedFamily, replicated_keys
from smpc.deferred import Waiting
from smpc.hosts import connect_node, load_roster, roster_options
from smpc.options import SessionOptions
from smpc.tensor import SharedTensor


class SessionStats:
    """Traffic of this party with the other computing parties (the dealer's traffic is counted apart)."""

    def __init__(self, party: Party, family: Family | None = None) -> None:
        self._party = party
        self._family: Family = family if family is not None else AdditiveFamily(party)

    def _sum(self, counter: dict[int, int], dealer: bool = False) -> int:
        if dealer:
            return counter.get(self._party.dealer_id, 0)
        return sum(v for peer, v in counter.items() if peer != self._party.dealer_id)

    @property
    def bytes_sent(self) -> int:
        return self._sum(self._party.transport.stats.bytes_sent)

    @property
    def bytes_received(self) -> int:
        return self._sum(self._party.transport.stats.bytes_received)

    @property
    def messages(self) -> int:
        """Messages sent to other parties."""
        return self._sum(self._party.transport.stats.messages_sent)

    @property
    def rounds(self) -> int:
        """Communication rounds among the parties (an opening, a reveal, a shape broadcast)."""
        return self._party.rounds

    @property
    def dealer_bytes_received(self) -> int:
        """Correction shares received from the dealer (offline-phase material; only the last party gets any)."""
        return self._sum(self._party.transport.stats.bytes_received, dealer=True)

    @property
    def dealer_bytes_sent(self) -> int:
        """Requests sent to the dealer (kinds and shapes only)."""
        return self._sum(self._party.transport.stats.bytes_sent, dealer=True)

    def reset(self) -> None:
        self._party.transport.stats.reset()
        self._party.rounds = 0

    def as_dict(self) -> dict[str, int]:
        names = ("bytes_sent", "bytes_received", "messages", "rounds", "dealer_bytes_received", "dealer_bytes_sent")
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        return "SessionStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"


class Session:
    """One party's end of a session.  Make it with ``Session.connect`` (real hosts) or ``smpc.run_local``.

    Use it as a context manager: leaving the block says goodbye to the peers (or aborts them on an error).
    """

    def __init__(self, party: Party, family: Family | None = None, *, check_range: bool = False) -> None:
        self._party = party
        self._family: Family = family if family is not None else AdditiveFamily(party)
        self._closed = False
        self._stats = SessionStats(party)
        self._check_range = bool(check_range)
        # Values whose truncation waits, settled together (smpc.deferred; the replicated family only).
        self._waiting = Waiting()

    @classmethod
    def from_transport(
        cls,
        transport: Transport,
        *,
        rank: int,
        n_parties: int,
        encoding: FixedPoint | None = None,
        truncation: str = "dealer",
        failure_budget: float = protocols.DEFAULT_FAILURE_BUDGET,
        gather_bytes: int | None = protocols.DEFAULT_GATHER_BYTES,
        device: str | torch.device = "cpu",
        protocol: str = "dealer",
        check_range: bool = False,
    ) -> Session:
        """Agree keys over a connected transport and return the session: ``protocol="dealer"`` (the dealer is
        node ``n_parties``) or ``"replicated"`` (three parties, no dealer).

        ``device``: where shares live and local arithmetic runs ("cuda" when torch sees a GPU); messages
        still travel from host memory.  ``gather_bytes``, ``check_range``: see ``SessionOptions``; all parties
        must agree (the transport's handshake compares them when it is made from ``SessionOptions``).
        """
        if protocol == "replicated":
            keys = replicated_keys(transport, rank)
            party = Party(rank=rank, n_parties=n_parties, transport=transport, encoding=encoding or FixedPoint(),
                          dealer_prg=None, pair_prgs={}, truncation=truncation, failure_budget=failure_budget,
                          gather_bytes=gather_bytes, device=protocols.check_device(device))
            return cls(party, ReplicatedFamily(party, keys), check_range=check_range)
        if protocol != "dealer":
            raise ValueError(f"protocol must be 'dealer' or 'replicated', got {protocol!r}")
        dealer_prg, pair_prgs = protocols.party_keys(transport, rank, n_parties)
        party = Party(
            rank=rank,
            n_parties=n_parties,
            transport=transport,
            encoding=encoding or FixedPoint(),
            dealer_prg=dealer_prg,
            pair_prgs=pair_prgs,
            truncation=truncation,
            failure_budget=failure_budget,
            gather_bytes=gather_bytes,
            device=protocols.check_device(device),
        )
        return cls(party, check_range=check_range)

    @classmethod
    def from_options(cls, transport: Transport, rank: int, options: SessionOptions) -> Session:
        """``from_transport`` with a session's shared options."""
        return cls.from_transport(transport, rank=rank, n_parties=options.n_parties, encoding=options.encoding,
                                  truncation=options.truncation, failure_budget=options.failure_budget,
                                  gather_bytes=options.gather_bytes, device=options.device,
                                  protocol=options.protocol, check_range=options.check_range)

    @classmethod
    def connect(cls, rank: int, roster: Roster | str | Path, key: str | Path, **options: Any) -> Session:
        """Join a session on real hosts as party ``rank``: ``roster`` is the roster file (or a Roster),
        ``key`` this party's secret key file (``smpc keygen``).  Blocks until every party and the dealer
        are connected and agree on the session's parameters.

        Options: ``int_bits``, ``truncation``, ``failure_budget``, ``recv_timeout``, ``connect_timeout``,
        ``gather_bytes``, ``check_range`` (all parties must agree; in the dealer family the dealer too:
        ``smpc dealer --check-range``), ``device`` ("cpu" or "cuda").
        """
        roster = load_roster(roster)
        if not 0 <= rank < roster.n_parties:
            raise ValueError(f"party rank must be in 0..{roster.n_parties - 1}, got {rank}")
        session_options = roster_options(roster, **options)
        transport = connect_node(rank, roster, key, session_options)
        try:
            return cls.from_options(transport, rank, session_options)
        except BaseException:
            transport.close(abort=True)
            raise

    # -- identity -------------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self._party.rank

    @property
    def world_size(self) -> int:
        """Number of computing parties (the dealer is not one of them)."""
        return self._party.n_parties

    @property
    def encoding(self) -> FixedPoint:
        return self._party.encoding

    @property
    def device(self) -> torch.device:
        """Where this party's shares live."""
        return self._party.device

    @property
    def party(self) -> Party:
        """The protocol-level view, for calling ``protocols`` functions directly."""
        return self._party

    @property
    def family(self) -> Family:
        """The protocol family this session computes with (``protocols.family``)."""
        return self._family

    @property
    def protocol(self) -> str:
        """The family's name: "dealer" or "replicated"."""
        return self._family.name

    @property
    def stats(self) -> SessionStats:
        return self._stats

    @property
    def check_range(self) -> bool:
        """Whether products and reveals are range-tested (``smpc.range_check``; ``RangeError`` when not)."""
        return self._check_range

    # -- data in --------------------------------------------------------------------------------------
    def share(self, value: Any, owner: int) -> SharedTensor:
        """Secret-share ``value`` (tensor, array or number) held by party ``owner``; others pass None.

        The shape travels with the protocol.  Raises ValueError for NaN, infinity or values outside the
        fixed-point range (|v| < 2^int_bits), on the owner, before anything is sent.  Integer and bool tensors
        and arrays (int64 included) are exact integers: k is shared as k * 2^frac_bits, reveals as exactly k
        (in float64, as every reveal), mixes with float values as any fixed-point value does, and |k| >=
        2^int_bits is refused, never wrapped (``FixedPoint.encode_integers``).
        """
        self._check_open()
        encoded = None
        if self.rank == owner:
            if value is None:
                raise ValueError(f"party {owner} owns this input and must pass a value, not None")
            encoded = self.encoding.encode(_as_tensor(value))
        elif value is not None:
            raise ValueError(f"party {self.rank} is not the owner (party {owner}) and must pass None")
        return SharedTensor(self, self._family.share(encoded, owner))

    def public(self, value: Any) -> SharedTensor:
        """A public value known to every party, as a SharedTensor (no communication)."""
        self._check_open()
        return SharedTensor(self, self._family.public(self.encoding.encode(_as_tensor(value))))

    # -- offline phase --------------------------------------------------------------------------------
    @contextmanager
    def record(self) -> Iterator[list]:
        """Record the dealer requests the block makes (the same on every party), to plan them ahead:

            with session.record() as plan:
                train_step(first_batch)
            session.preprocess(plan, times=remaining_batches)
        """
        self._check_open()
        if any(isinstance(observer, protocols.RequestRecorder) for observer in self._party.observers):
            raise RuntimeError("already recording")
        recorder = protocols.RequestRecorder()
        self._party.observers.append(recorder)
        try:
            yield recorder.requests
        finally:
            self._party.observers.remove(recorder)

    def preprocess(self, plan: list, times: int = 1, *, wait: bool = True) -> float:
        """Offline phase: have the dealer make ``times`` repetitions of a recorded ``plan`` now.  Every party
        calls it at the same point.  With ``wait`` (default) it returns once every correction has arrived, so
        the online phase that follows never waits on the dealer; without, the dealer works in the background.
        The following dealer requests must repeat the plan exactly (``protocols.additive.dealer.PlanMismatch``).
        Returns the seconds this party waited.  No round among the parties.  In the replicated family there is
        no dealer and nothing to make ahead: it returns at once."""
        self._check_open()
        start = time.perf_counter()
        self._family.preprocess(plan, times, wait=wait)
        return time.perf_counter() - start

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self, *, abort: bool = False, reason: str = "") -> None:
        """End the session: goodbye to every peer, or with ``abort`` an ABORT telling them ``reason``."""
        if not self._closed:
            self._closed = True
            party = self._party
            if not abort:
                for stream in party.pending_plan_acks:  # the dealer finished a background plan
                    party.transport.recv(party.dealer_id, stream, op="dealer plan")
            self._party.transport.close(abort=abort, reason=reason)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this session is closed")

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(abort=exc_type is not None, reason=abort_reason(exc) if exc_type is not None else "")

    def __repr__(self) -> str:
        return f"Session(rank={self.rank}, parties={self.world_size}, frac_bits={self.encoding.frac_bits})"


def _as_tensor(value: Any) -> torch.Tensor | np.ndarray:
    """What ``encode`` takes: tensors as they are, integer and bool arrays as they are (exact integers), other
    arrays and Python values as float64."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "iub" else torch.from_numpy(np.asarray(value, dtype=np.float64))
    return torch.as_tensor(value, dtype=torch.float64)
