"""Telling the peers that this node could not start, so that they fail at once instead of at their connect timeout.

A node whose own set-up fails before it has a transport (its address cannot be bound) can still dial out: it holds
the secret key the roster lists for it, so every peer's ZAP handler admits it under its own rank, and each of its
DEALERs is pinned to that peer's roster key, so the notice reaches the genuine peers only.  It sends one ABORT as
the first frame of each link; a peer's set-up loop takes an ABORT before any HELLO as "could not start" and names
the node, its address and the reason.

Not for a port in use (``BindError.in_use``): its holder may be this same node started twice, in the same
session, and its peers must not hear that it failed.  What this cannot cover: a node whose key does not match the
roster (or whose rank is wrong) cannot authenticate as itself, so it has nobody it may speak for; its peers learn
of it only from their set-up timeout, whose message lists the likely causes
(``zmq_setup.set_up_timeout_message``).

Cost: one CurveZMQ handshake and one frame of at most ``zmq_liveness.ABORT_REASON_CHARS`` characters per peer;
waits at most ``wait`` seconds for the peers to be reachable, plus ``zmq_liveness.FLUSH_LINGER_MS`` to flush.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import zmq_liveness as liveness
from . import zmq_setup as setup
from .base import node_name
from .delivery import send_message
from .errors import NetworkError

_POLL_S = 0.05


def tell_peers_we_failed(
    rank: int,
    *,
    public_key: bytes,
    secret_key: bytes,
    roster_keys: Mapping[int, bytes],
    session_id: bytes,
    addresses: Mapping[int, str],
    reason: str,
    names: Mapping[int, str] | None = None,
    wait: float = 10.0,
) -> list[int]:
    """Send an ABORT carrying ``reason`` to every peer in ``addresses`` (node id -> endpoint) that is reachable
    within ``wait`` seconds; return the ids of those whose CurveZMQ handshake succeeded (they have the notice, or
    will within the flush).  Never raises a NetworkError: a notice that cannot go is simply not sent.

    Steps: 1. check our keys against the roster (ValueError if they do not belong together); 2. open a DEALER
    pinned to each peer's roster key and queue the ABORT on it (frame 0 of that link); 3. wait until every
    handshake succeeded or failed, or ``wait`` seconds passed; 4. close, lingering where the handshake succeeded.
    """
    keys = setup.check_keys(rank, public_key, secret_key, roster_keys)
    session = setup.check_session_id(session_id)
    options = _notice_options(wait)
    context = zmq.Context()
    links: list[setup.Link] = []
    try:
        for node, endpoint in sorted(addresses.items()):
            if node != rank and node in keys.roster:
                try:
                    links.append(setup.open_link(context, node, node_name(node, names or {}), endpoint, keys,
                                                 options))
                except ValueError:
                    continue  # an endpoint ZeroMQ cannot dial: that peer cannot be told
        kind, body = liveness.goodbye(True, reason)
        for link in links:
            try:
                send_message(link, kind, 0, body, session_id=session, sender=rank, timeout=0.0, wait=_no_wait)
            except NetworkError:
                pass
        _await_handshakes(links, time.monotonic() + options.connect_timeout)
        return [link.node for link in links if link.linked]
    finally:
        for link in links:
            link.socket.disable_monitor()
            link.monitor.close(linger=0)
            link.socket.close(linger=liveness.FLUSH_LINGER_MS if link.linked else 0)
        context.destroy(linger=0)


def _notice_options(wait: float) -> setup.Options:
    """Socket options for the notice: ordinary heartbeats, one small frame."""
    seconds = setup.positive(wait, "wait")
    return setup.Options(recv_timeout=seconds, connect_timeout=seconds, close_timeout=0.0, heartbeat_ivl_ms=1000,
                         heartbeat_timeout_ms=4000, max_message_bytes=1 << 16, max_buffered_bytes=1 << 17)


def _await_handshakes(links: list[setup.Link], deadline: float) -> None:
    """Follow the monitors until every link's handshake succeeded or failed, or the deadline passed."""
    while any(not (link.linked or link.handshake_failure) for link in links) and time.monotonic() < deadline:
        for link in links:
            while link.monitor.poll(0, zmq.POLLIN):
                event = recv_monitor_message(link.monitor)
                liveness.note_event(link, int(event["event"]), int(event["value"]))
        time.sleep(_POLL_S)


def _no_wait(link: setup.Link, remaining: float) -> None:
    """A notice never waits for queue space: a fresh DEALER's queue is empty."""
