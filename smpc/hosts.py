"""Joining a session on real hosts from a roster file and a key file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from network import Roster, ZmqTransport, read_secret_key
from smpc.options import SessionOptions


def load_roster(roster: Roster | str | Path) -> Roster:
    return roster if isinstance(roster, Roster) else Roster.load(roster)


def connect_node(rank: int, roster: Roster, key: str | Path, options: SessionOptions) -> ZmqTransport:
    """A connected ZmqTransport for node ``rank`` (a party, or ``roster.dealer_id`` for the dealer).

    Raises ValueError when the rank or the key does not match the roster, HandshakeError when a peer refuses.
    """
    if not 0 <= rank <= roster.n_parties:
        raise ValueError(
            f"rank {rank} is not in the roster (parties 0..{roster.n_parties - 1}, dealer {roster.dealer_id})"
        )
    public, secret = read_secret_key(key)
    if public != roster.public_keys[rank]:
        who = "the dealer" if rank == roster.dealer_id else f"party {rank}"
        raise ValueError(f"the key file {key} does not hold the public key the roster lists for {who}")
    transport = ZmqTransport(
        rank,
        public_key=public,
        secret_key=secret,
        roster_keys=roster.public_keys,
        session_id=roster.session_id,
        handshake=options.handshake(),
        bind=roster.bind_addresses[rank],
        names=options.names(),
        recv_timeout=options.recv_timeout,
        connect_timeout=options.connect_timeout,
    )
    try:
        transport.connect({node: addr for node, addr in roster.addresses.items() if node != rank})
    except BaseException:
        transport.close(abort=True)
        raise
    return transport


def roster_options(roster: Roster, **overrides: Any) -> SessionOptions:
    """Session options for a roster: its party count and fractional bits, plus the given overrides."""
    return SessionOptions(n_parties=roster.n_parties, frac_bits=roster.frac_bits, **overrides)
