"""Setting up a ZmqTransport: checked arguments, the sockets, the links to peers and the HELLO exchange's checks.

Everything here runs before the first DATA frame: what a node binds and dials, with which ZeroMQ options, and why
a set-up failed (a peer's differing parameters, a refused key, a missing HELLO).  Costs are those of creating
sockets; nothing waits here, the transport's event loop does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from .errors import BindError, HandshakeError
from .framing import CHUNK_BYTES, HEADER_SIZE, SESSION_ID_BYTES, Frame, json_payload
from .roster import check_z85_key

ZAP_DOMAIN = b"smpc"
#: SNDHWM and RCVHWM, in ZeroMQ messages.  Each message we send is one frame of at most CHUNK_BYTES plus a header,
#: so what libzmq queues for one peer is bounded by HWM_FRAMES x (CHUNK_BYTES + HEADER_SIZE), 1 GiB, plus the one
#: frame it is decoding (MAXMSGSIZE).  The price: a node that calls into its transport less often than every
#: heartbeat timeout while a peer has more than this many frames on the way to it has that connection dropped
#: (libzmq stops reading a connection whose queue is full, and its heartbeats starve), which shows as a lost peer.
#: 1024 frames leave room for a dealer making a plan's corrections ahead of time (one message each) while the
#: parties compute.
HWM_FRAMES = 1024
_MAXMSGSIZE_SLACK = 4096  # CURVE adds a few dozen bytes to every frame
MONITORED_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass
class Link:
    """Everything we know about one peer: our DEALER to it and the state of its frames to us."""

    node: int
    name: str
    endpoint: str
    socket: zmq.Socket
    monitor: zmq.Socket
    send_seq: int = 0
    recv_seq: int = 0
    hello: bool = False  # its HELLO reached us and passed the checks
    linked: bool = False  # our CURVE handshake with it succeeded
    bye: bool = False
    aborted: bool = False
    abort_reason: str = ""
    lost: bool = False
    handshake_failure: str = ""

    @property
    def gone(self) -> bool:
        """The peer will send nothing more: it said goodbye, aborted or was lost."""
        return self.bye or self.aborted or self.lost


@dataclass
class Options:
    """Timeouts and limits, in the units ZeroMQ wants."""

    recv_timeout: float
    connect_timeout: float
    close_timeout: float
    heartbeat_ivl_ms: int
    heartbeat_timeout_ms: int
    max_message_bytes: int
    max_buffered_bytes: int


@dataclass(frozen=True)
class Keys:
    """This node's Z85 keypair and every roster node's Z85 public key (ours included)."""

    public: bytes
    secret: bytes
    roster: Mapping[int, bytes]


# --------------------------------------------------------------------------------------------------- sockets


def bind_router(context: zmq.Context, bind: str, keys: Keys, options: Options, name: str = "this node") -> zmq.Socket:
    """Our CURVE server socket, bound at ``bind`` (port 0 picks a free port); BindError if it cannot bind,
    saying what to check (``name`` is how errors name this node)."""
    router = context.socket(zmq.ROUTER)
    try:
        apply_common_options(router, options)
        router.curve_server = True
        router.curve_secretkey = keys.secret
        router.curve_publickey = keys.public
        router.zap_domain = ZAP_DOMAIN
        # Without it libzmq admits ANY CURVE client when no ZAP handler answers (our thread stopped or died).
        router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        router.bind(bind)
    except BaseException as error:
        router.close(linger=0)
        if isinstance(error, zmq.ZMQError):
            code = error.errno or 0
            reason = zmq.strerror(code)  # error.strerror repeats the address
            raise BindError(f"cannot bind {bind!r}: {reason}{bind_hint(code, name)}",
                            in_use=code == zmq.EADDRINUSE) from error
        raise
    return router


def bind_hint(errno: int, name: str) -> str:
    """What to check when binding failed with ``errno``, "" when we have no idea."""
    if errno == zmq.EADDRINUSE:
        return ("; another process (another program, or an earlier node still running) holds that port: stop it "
                "or give this node another port in the roster")
    if errno == zmq.EADDRNOTAVAIL:
        return (f"; no interface of this host has that address: check the rank this node was started with "
                f"(--rank) and the roster's address for {name} (a \"bind\": \"tcp://0.0.0.0:PORT\" in that roster "
                "entry listens on every interface)")
    return ""


def open_link(context: zmq.Context, node: int, name: str, endpoint: str, keys: Keys, options: Options) -> Link:
    """A monitored DEALER pinned to ``node``'s roster key, connecting to ``endpoint``; ValueError if it cannot."""
    dealer = context.socket(zmq.DEALER)
    apply_common_options(dealer, options)
    dealer.curve_secretkey = keys.secret
    dealer.curve_publickey = keys.public
    dealer.curve_serverkey = keys.roster[node]
    monitor = dealer.get_monitor_socket(MONITORED_EVENTS)
    link = Link(node=node, name=name, endpoint=endpoint, socket=dealer, monitor=monitor)
    try:
        dealer.connect(endpoint)
    except zmq.ZMQError as error:
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)
        raise ValueError(f"cannot connect to {name} at {endpoint!r}: {error.strerror}") from error
    return link


def apply_common_options(socket: zmq.Socket, options: Options) -> None:
    """LINGER 0, frame size cap, heartbeats and short queues (``HWM_FRAMES``), on both socket kinds."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, CHUNK_BYTES + HEADER_SIZE + _MAXMSGSIZE_SLACK)
    socket.setsockopt(zmq.HEARTBEAT_IVL, options.heartbeat_ivl_ms)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, options.heartbeat_timeout_ms)
    socket.setsockopt(zmq.HEARTBEAT_TTL, min(options.heartbeat_timeout_ms, 6_553_500))
    socket.setsockopt(zmq.SNDHWM, HWM_FRAMES)
    socket.setsockopt(zmq.RCVHWM, HWM_FRAMES)
    socket.setsockopt(zmq.IMMEDIATE, 0)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)


# ---------------------------------------------------------------------------------------------- handshake


def hello_payload(rank: int, session_id: bytes, handshake: Mapping[str, Any]) -> np.ndarray:
    """The body of our HELLO: who we are, our session and the parameters every peer must share."""
    return json_payload({"rank": rank, "session": session_id.hex(), "handshake": dict(handshake)})


def check_hello(link: Link, frame: Frame, session_id: bytes, handshake: Mapping[str, Any]) -> None:
    """HandshakeError unless the HELLO's session, rank and handshake parameters match ours exactly."""
    if frame.session_id != session_id:
        raise HandshakeError(
            f"{link.name} is in session {frame.session_id.hex()}, we are in session {session_id.hex()}"
        )
    body = frame.json()
    if not isinstance(body, dict):
        raise HandshakeError(f"HELLO from {link.name} is not a JSON object")
    if body.get("rank") != link.node:
        raise HandshakeError(f"{link.name} says it is node {body.get('rank')!r} in its HELLO")
    if body.get("session") != session_id.hex():
        raise HandshakeError(
            f"{link.name} is in session {body.get('session')!r}, we are in session {session_id.hex()}"
        )
    theirs = body.get("handshake")
    if not isinstance(theirs, dict):
        raise HandshakeError(f"HELLO from {link.name} has no handshake parameters")
    differences = _handshake_differences(link.name, theirs, handshake)
    if differences:
        raise HandshakeError("; ".join(differences))


def _handshake_differences(name: str, theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """One line per parameter that differs, naming both values."""
    lines = []
    for key in sorted(set(theirs) | set(ours)):
        if key not in theirs:
            lines.append(f"{name} has no {key}, we have {key}={json.dumps(ours[key])}")
        elif key not in ours:
            lines.append(f"{name} has {key}={json.dumps(theirs[key])}, we have no {key}")
        elif theirs[key] != ours[key] or type(theirs[key]) is not type(ours[key]):
            lines.append(f"{name} has {key}={json.dumps(theirs[key])}, we have {key}={json.dumps(ours[key])}")
    return lines


def ready(link: Link) -> bool:
    """Set-up with this peer is done: its HELLO passed and our handshake succeeded (or it already left)."""
    return link.hello and (link.linked or link.bye)


def raise_link_failure(links: Mapping[int, Link]) -> None:
    """HandshakeError if any peer aborted (before its HELLO: could not start), refused our key or was lost during
    set-up.  An abort comes first: it names its cause, and a peer that stops closes any handshake in flight with
    it, which then fails as a wrong key would."""
    for link in links.values():
        if link.aborted and not link.hello:
            raise HandshakeError(f"{link.name} ({link.endpoint}) could not start: {link.abort_reason}")
        if link.aborted:
            raise HandshakeError(f"{link.name} aborted the set-up: {link.abort_reason}")
    for link in links.values():
        if link.handshake_failure:
            raise HandshakeError(link.handshake_failure)
        if link.lost:
            raise HandshakeError(f"lost {link.name} during set-up")


def set_up_timeout_message(waiting: list[Link], connect_timeout: float, denied: int, last_denied_key: str) -> str:
    """Why set-up timed out, naming each peer we still wait for, what is missing from it and its likely causes."""
    parts = []
    for link in waiting:
        missing = "its HELLO" if not link.hello else "our CURVE handshake with it"
        parts.append(f"{link.name} at {link.endpoint} ({missing} missing: {_likely_causes(link)})")
    message = f"set-up timed out after {connect_timeout:g} s waiting for " + ", ".join(parts)
    if denied:
        # Not a reason to give up early: anyone who can reach the port can present a stranger's key.
        message += (
            f"; meanwhile refused {denied} connection(s) from a key not on the roster (last one starts "
            f"{last_denied_key}): does a peer use the wrong key file or roster?"
        )
    return message


def _likely_causes(link: Link) -> str:
    """Why a peer may still be missing, from what did arrive: nothing, only our handshake, or only its HELLO."""
    where = link.endpoint.removeprefix("tcp://")
    if link.hello:  # it reached us, we do not reach it
        return f"the roster's address for {link.name} is wrong, or {where} is not reachable from here (firewall?)"
    if link.linked:  # we reach it, its HELLO does not reach us
        return (f"{link.name} is up but does not reach us: our address in its roster is wrong or our port is not "
                "reachable from its host (firewall?), or it uses another roster")
    return (f"is it running, as {link.name} (its rank), with the key the roster lists for it? is {where} "
            "reachable from here (firewall?)")


# ------------------------------------------------------------------------------------------- argument checks


def check_addresses(
    rank: int, addresses: Mapping[int, str], keys: Keys, name: Callable[[int], str]
) -> dict[int, str]:
    """Validate the peer map: roster nodes other than ourselves, tcp endpoints."""
    peers = {int(node): str(endpoint) for node, endpoint in sorted(addresses.items())}
    if not peers:
        raise ValueError("connect() needs at least one peer")
    for node, endpoint in peers.items():
        if node == rank:
            raise ValueError(f"{name(node)} is this node; do not list it among its peers")
        if node not in keys.roster:
            raise ValueError(f"{name(node)} has no public key in the roster")
        if not endpoint.startswith("tcp://"):
            raise ValueError(f"address of {name(node)} must be a tcp:// endpoint, got {endpoint!r}")
    return peers


def check_keys(rank: int, public: bytes, secret: bytes, roster: Mapping[int, bytes]) -> Keys:
    """Validated keys: all Z85, roster keys distinct, ours listed and matching our secret key."""
    public = check_z85_key(public, "public_key")
    secret = check_z85_key(secret, "secret_key")
    checked = {int(node): check_z85_key(key, f"roster key of node {node}") for node, key in roster.items()}
    if rank not in checked:
        raise ValueError(f"roster_keys has no key for this node ({rank})")
    if checked[rank] != public or zmq.curve_public(secret) != public:
        raise ValueError(f"public_key, secret_key and the roster key of node {rank} do not belong together")
    if len(set(checked.values())) != len(checked):
        raise ValueError("two roster nodes share a public key; every node needs its own keypair")
    return Keys(public=public, secret=secret, roster=checked)


def buffer_budget(max_buffered_bytes: int | None, max_message_bytes: int, charge: int) -> int:
    """The per-peer budget of bytes buffered here: as given, or room for two messages at the cap plus 1 MiB
    (about a thousand small messages); ValueError if it could not hold one message at the cap."""
    if max_buffered_bytes is None:
        return 2 * max_message_bytes + (1 << 20)
    budget = int(positive(max_buffered_bytes, "max_buffered_bytes"))
    if budget < max_message_bytes + charge:
        raise ValueError(
            f"max_buffered_bytes={budget} cannot hold one message at max_message_bytes={max_message_bytes} "
            f"(plus {charge} bytes of bookkeeping); give at least {max_message_bytes + charge}"
        )
    return budget


def check_session_id(session_id: bytes) -> bytes:
    """The session id as bytes of the right length."""
    raw = bytes(session_id)
    if len(raw) != SESSION_ID_BYTES:
        raise ValueError(f"session_id must be {SESSION_ID_BYTES} bytes, got {len(raw)}")
    return raw


def normalise_handshake(handshake: Mapping[str, object]) -> dict[str, Any]:
    """The handshake parameters as they will look after a JSON round trip, so comparisons are exact."""
    try:
        return json.loads(json.dumps(dict(handshake), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"handshake parameters must be JSON values: {error}") from error


def positive(value: float, what: str) -> float:
    """``value`` as a positive finite float, else ValueError."""
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a positive number of seconds or bytes, got {value!r}")
    return number


def millis(seconds: float, what: str) -> int:
    """A positive duration in whole milliseconds, as ZeroMQ options want (at least 1)."""
    return max(1, seconds_to_ms(positive(seconds, what)))


def seconds_to_ms(seconds: float) -> int:
    """Seconds to milliseconds, rounded up so short waits do not become busy loops."""
    return max(0, math.ceil(seconds * 1000))
