"""Joining a session on real hosts from a roster file and a key file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from network import BindError, Roster, ZmqTransport, read_secret_key, tell_peers_we_failed
from smpc.options import SessionOptions

#: How long a node that cannot start tries to reach its peers to tell them so (at most its connect timeout).
FAILURE_NOTICE_SECONDS = 10.0


def load_roster(roster: Roster | str | Path) -> Roster:
    return roster if isinstance(roster, Roster) else Roster.load(roster)


def connect_node(rank: int, roster: Roster, key: str | Path, options: SessionOptions) -> ZmqTransport:
    """A connected ZmqTransport for node ``rank`` (a party, or ``roster.dealer_id`` for the dealer).

    Raises ValueError when the rank or the key does not match the roster, HandshakeError when a peer refuses,
    BindError when this node cannot bind its address (unless another process holds the port, after telling the
    peers it reaches within ``FAILURE_NOTICE_SECONDS``, so that they stop waiting for it).
    """
    if rank not in roster.nodes:
        dealer = f", dealer {roster.dealer_id}" if roster.dealer is not None else ", no dealer"
        raise ValueError(f"rank {rank} is not in the roster (parties 0..{roster.n_parties - 1}{dealer})")
    public, secret = read_secret_key(key)
    if public != roster.public_keys[rank]:
        who = "the dealer" if rank == roster.dealer_id else f"party {rank}"
        raise ValueError(f"the key file {key} does not hold the public key the roster lists for {who}: is "
                         f"{who} this host's rank, and is this the roster made with this key's .pub file?")
    peers = {node: addr for node, addr in roster.addresses.items() if node != rank}
    try:
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
    except BindError as error:
        # A port in use may be held by this very node, started twice: its peers must not hear that it failed.
        # (A peer dialling that port reaches the holder: this node's twin, which serves it, or another program,
        # with which no CurveZMQ handshake succeeds, and the peer's error names the port.)
        if not error.in_use:
            tell_peers_we_failed(rank, public_key=public, secret_key=secret, roster_keys=roster.public_keys,
                                 session_id=roster.session_id, addresses=peers, reason=str(error),
                                 names=options.names(), wait=min(FAILURE_NOTICE_SECONDS, options.connect_timeout))
        raise
    try:
        transport.connect(peers)
    except BaseException:
        transport.close(abort=True)
        raise
    return transport


def roster_options(roster: Roster, **overrides: Any) -> SessionOptions:
    """Session options for a roster: its party count, fractional bits and protocol family (a roster with a
    dealer is the dealer family's; one without is the replicated family's, three parties), plus overrides."""
    protocol = "dealer" if roster.dealer is not None else "replicated"
    asked = overrides.pop("protocol", None)
    if asked is not None and asked != protocol:
        raise ValueError(f"protocol {asked!r} asked for, but the roster {'has' if roster.dealer else 'has no'} "
                         f"dealer, which means protocol {protocol!r}")
    if protocol == "replicated" and roster.n_parties != 3:
        raise ValueError(f"a roster without a dealer is for the replicated protocol: exactly 3 parties, not "
                         f"{roster.n_parties}")
    return SessionOptions(n_parties=roster.n_parties, frac_bits=roster.frac_bits, protocol=protocol, **overrides)
