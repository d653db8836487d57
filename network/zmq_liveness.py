"""Liveness of a ZmqTransport's peers: monitor events, lost peers, goodbyes, aborts, and releasing the sockets.

ZeroMQ heartbeats run on every connection; a socket monitor per DEALER reports our CURVE handshake's outcome and
every disconnect.  A disconnect counts as a loss unless the peer's BYE or ABORT, racing it on the other connection,
shows up within ``LOSS_GRACE_S``.  Nothing here costs more than polling a socket for that grace period.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .errors import PeerClosedError, PeerLostError, ProtocolError
from .framing import Frame, Kind, json_payload
from .zap import ZapHandler
from .zmq_setup import Link

LOSS_GRACE_S = 0.25  # after a disconnect, how long a BYE already on its way still counts as a clean goodbye
ABORT_REASON_CHARS = 300
FLUSH_LINGER_MS = 1000


def drain_monitor(link: Link, confirm_loss: Callable[[Link], None],
                  explain_failure: Callable[[], None] = lambda: None) -> None:
    """Apply every event waiting on ``link``'s monitor; ``confirm_loss`` decides about a disconnect,
    ``explain_failure`` waits a moment after our handshake with the peer failed (see ``await_abort``)."""
    while link.monitor.poll(0, zmq.POLLIN):
        event = recv_monitor_message(link.monitor)
        failed = bool(link.handshake_failure)
        if note_event(link, int(event["event"]), int(event["value"])):
            confirm_loss(link)
        elif link.handshake_failure and not failed:
            explain_failure()


def note_event(link: Link, event: int, value: int) -> bool:
    """Track our CURVE handshake with the peer; True when its connection dropped and that may be a loss."""
    if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
        link.linked = True
    elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and not link.linked:
        link.handshake_failure = f"{link.name} refused our key (ZAP status {value}); is our public key in its roster?"
    elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL) and not link.linked:
        link.handshake_failure = (
            f"CURVE handshake with {link.name} at {link.endpoint} failed: the public key we have for it does "
            "not match its secret key, or it refused ours, or it is not an smpc node, or it stopped during the "
            "handshake"
        )
    elif event == zmq.EVENT_DISCONNECTED and link.linked and not link.gone:
        return True
    return False


def await_abort(links: Iterable[Link], router: zmq.Socket, drain_router: Callable[[], None]) -> None:
    """Give an ABORT already on its way ``LOSS_GRACE_S`` to arrive from any peer.

    A CURVE handshake that fails with the connection closed under it looks the same, to our monitor, as one that
    fails on a wrong key (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, EPIPE or ECONNRESET): a peer that stops during
    our set-up, because another node told it that it could not start, closes a handshake in flight.  Its ABORT,
    or the other node's notice, then names the real cause, which ``raise_link_failure`` puts first.
    """
    watched = list(links)
    give_up = time.monotonic() + LOSS_GRACE_S
    while not any(link.aborted for link in watched) and time.monotonic() < give_up:
        if router.poll(20, zmq.POLLIN):
            drain_router()


def confirm_loss(link: Link, router: zmq.Socket, drain_router: Callable[[], None]) -> None:
    """Mark ``link`` lost unless its BYE or ABORT, racing the disconnect on the other connection, shows up."""
    give_up = time.monotonic() + LOSS_GRACE_S
    while not link.gone and time.monotonic() < give_up:
        if router.poll(20, zmq.POLLIN):
            drain_router()
    if not link.gone:
        link.lost = True


def raise_if_failed(links: Mapping[int, Link], src: int, what: Callable[[], str]) -> None:
    """Raise if ``src`` or any other peer is lost or aborted, or ``src`` closed without sending ``what()`` (called
    only then: this runs on every wait of every round)."""
    for link in links.values():
        if link.bye or link.aborted or link.lost:
            break
    else:
        return
    awaited = what()
    ordered = [links[src]] + [link for node, link in sorted(links.items()) if node != src]
    for link in ordered:
        if link.aborted:
            raise PeerLostError(f"{link.name} aborted ({link.abort_reason}) while we waited for {awaited}",
                                peer=link.node)
        if link.lost:
            raise PeerLostError(f"lost {link.name} while waiting for {awaited}", peer=link.node)
    if links[src].bye:
        raise PeerClosedError(f"{links[src].name} closed the session before sending {awaited}", peer=src)


def apply_goodbye(link: Link, frame: Frame) -> None:
    """Record a BYE or an ABORT (with its sanitised reason) from ``link``'s peer."""
    if frame.kind == Kind.BYE:
        link.bye = True
    else:
        link.aborted = True
        link.abort_reason = _abort_reason(frame)


def goodbye(abort: bool, reason: str) -> tuple[Kind, np.ndarray]:
    """The kind and body of the frame we end a session with: BYE, or ABORT carrying a bounded ``reason``."""
    if abort:
        return Kind.ABORT, json_payload({"reason": reason[:ABORT_REASON_CHARS]})
    return Kind.BYE, json_payload({})


def _abort_reason(frame: Frame) -> str:
    """The printable, bounded reason an ABORT frame gives (peer-supplied text, so sanitised)."""
    try:
        body = frame.json()
    except ProtocolError:
        return "no reason given"
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason:
        return "no reason given"
    return "".join(ch if ch.isprintable() else "?" for ch in reason[:ABORT_REASON_CHARS])


def release(links: Iterable[Link], router: zmq.Socket, zap: ZapHandler, context: zmq.Context) -> None:
    """Close every socket, stop the ZAP thread and terminate the context (frees the port).

    Links to peers still running linger up to ``FLUSH_LINGER_MS`` so our last frames, BYE or ABORT reach them even
    if our CURVE handshake with them is still under way (a set-up refused early); the rest close at once.  The
    lingering sockets flush in parallel, so this never takes much longer than that.
    """
    for link in links:
        linger = 0 if link.gone else FLUSH_LINGER_MS
        link.socket.disable_monitor()
        link.monitor.close(linger=0)
        link.socket.close(linger=linger)
    router.close(linger=0)
    zap.close()
    context.destroy(linger=0)
