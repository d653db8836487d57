"""A node that cannot start, seen from its peers: a node that cannot bind tells every peer it reaches (an
authenticated ABORT before any HELLO), so they fail at once naming it, its address and the reason; a notice for
another session is not taken for ours; a peer that never comes up is named with the likely causes, which depend
on what did arrive from it; an address this host does not have is refused with what to check.

Nodes of one test run in threads of this process (``tests.support.nodes``).
"""

from __future__ import annotations

from typing import cast

import pytest
import zmq

from network.errors import HandshakeError, NetworkError
from network.zmq_notice import tell_peers_we_failed
from network.zmq_setup import Link, raise_link_failure
from tests.support.nodes import SESSION, Cluster, in_threads

REASON = "cannot bind 'tcp://192.0.2.1:5555': Cannot assign requested address"
UNREACHABLE = "tcp://127.0.0.1:9"  # the discard port: nobody listens there


def _notice(cluster: Cluster, addresses: dict[int, str], session_id: bytes = SESSION) -> list[int]:
    """Party 1 (three parties) tells the nodes at ``addresses`` that it could not start."""
    public, secret = cluster.keypair(1)
    return tell_peers_we_failed(1, public_key=public, secret_key=secret, roster_keys=cluster.roster(3),
                                session_id=session_id, addresses=addresses, reason=REASON,
                                names={node: f"party {node}" for node in range(3)}, wait=20.0)


def test_a_node_that_cannot_bind_tells_its_peers_who_stop_waiting_at_once(cluster: Cluster) -> None:
    """Peers with a 60 s connect timeout fail with the notice's line, not with a timeout (one of them may hear it
    first from the other, whose own ABORT then quotes it; that one may close before the notice's own handshake
    with it completes, so the notice need only have reached one of them)."""
    first, third = cluster.node(0, 3, connect_timeout=60.0), cluster.node(2, 3, connect_timeout=60.0)
    addresses = {0: first.endpoint, 1: UNREACHABLE, 2: third.endpoint}
    outcomes = in_threads([
        lambda: first.connect({1: UNREACHABLE, 2: third.endpoint}),
        lambda: third.connect({0: first.endpoint, 1: UNREACHABLE}),
        lambda: _notice(cluster, addresses),
    ], timeout=50.0)
    told = outcomes[2]
    assert isinstance(told, list) and told and set(told) <= {0, 2}, outcomes
    for error in outcomes[:2]:
        assert isinstance(error, HandshakeError), error
        assert str(error).endswith(f"party 1 ({UNREACHABLE}) could not start: {REASON}"), error
    assert first.closed and third.closed


def test_a_notice_for_another_session_is_refused_as_such(cluster: Cluster) -> None:
    waiting = cluster.node(0, 3, connect_timeout=60.0)
    outcomes = in_threads([
        lambda: waiting.connect({1: UNREACHABLE}),
        lambda: _notice(cluster, {0: waiting.endpoint}, session_id=b"another-session!"),
    ], timeout=50.0)
    assert outcomes[1] == [0]
    assert isinstance(outcomes[0], HandshakeError), outcomes[0]
    assert f"party 1 could not start session {b'another-session!'.hex()}; we are in session {SESSION.hex()}" \
        in str(outcomes[0])


def test_a_notice_nobody_can_receive_returns_promptly_with_nobody_told(cluster: Cluster) -> None:
    assert tell_peers_we_failed(
        1, public_key=cluster.keypair(1)[0], secret_key=cluster.keypair(1)[1], roster_keys=cluster.roster(3),
        session_id=SESSION, addresses={0: UNREACHABLE}, reason=REASON, wait=0.5) == []


def test_a_peer_that_never_comes_up_is_named_with_the_likely_causes(cluster: Cluster) -> None:
    lonely = cluster.node(0, 2, connect_timeout=0.5)
    with pytest.raises(HandshakeError) as caught:
        lonely.connect({1: UNREACHABLE})
    assert str(caught.value) == (
        f"set-up timed out after 0.5 s waiting for party 1 at {UNREACHABLE} (its HELLO missing: is it running, "
        "as party 1 (its rank), with the key the roster lists for it? is 127.0.0.1:9 reachable from here "
        "(firewall?))")


@pytest.mark.parametrize(("asker", "expected"), [
    (0, "(our CURVE handshake with it missing: the roster's address for party 1 is wrong, or 127.0.0.1:9 is not "
        "reachable from here (firewall?))"),
    (1, "(its HELLO missing: party 0 is up but does not reach us: our address in its roster is wrong or our port "
        "is not reachable from its host (firewall?), or it uses another roster)"),
])
def test_a_one_way_link_names_the_side_that_cannot_be_reached(cluster: Cluster, asker: int, expected: str) -> None:
    """Party 0 dials a wrong address for party 1, party 1 dials party 0 correctly: party 0 has party 1's HELLO
    but no handshake of its own; party 1 has its handshake but no HELLO.  The asker times out first (the other
    then hears of its close, which says nothing here)."""
    timeouts = {asker: 1.0, 1 - asker: 30.0}
    first, second = (cluster.node(rank, 2, connect_timeout=timeouts[rank]) for rank in (0, 1))
    errors = in_threads([lambda: first.connect({1: UNREACHABLE}), lambda: second.connect({0: first.endpoint})])
    assert isinstance(errors[asker], HandshakeError) and expected in str(errors[asker]), errors[asker]


def test_an_address_this_host_does_not_have_says_what_to_check(cluster: Cluster) -> None:
    """192.0.2.1 is TEST-NET-1 (RFC 5737): no host has it."""
    with pytest.raises(NetworkError) as caught:
        cluster.node(1, 3, bind="tcp://192.0.2.1:5555")
    assert str(caught.value) == (
        "cannot bind 'tcp://192.0.2.1:5555': Cannot assign requested address; no interface of this host has that "
        "address: check the rank this node was started with (--rank) and the roster's address for party 1 (a "
        '"bind": "tcp://0.0.0.0:PORT" in that roster entry listens on every interface)')


def test_an_abort_is_named_before_a_handshake_it_broke() -> None:
    """A peer that stops during our set-up closes our handshake in flight with it, which fails as a wrong key
    would; the abort that stopped it, from it or from another node, is the cause we name."""
    def link(node: int, **state: object) -> Link:
        return Link(node=node, name=f"party {node}", endpoint=f"tcp://127.0.0.1:{7000 + node}",
                    socket=cast(zmq.Socket, None), monitor=cast(zmq.Socket, None), **state)

    broken = link(2, handshake_failure="CURVE handshake with party 2 at tcp://127.0.0.1:7002 failed: ...")
    for aborting, expected in [
        (link(1, aborted=True, abort_reason=REASON), f"party 1 (tcp://127.0.0.1:7001) could not start: {REASON}"),
        (link(1, hello=True, aborted=True, abort_reason="set-up interrupted"),
         "party 1 aborted the set-up: set-up interrupted"),
    ]:
        with pytest.raises(HandshakeError) as caught:
            raise_link_failure({2: broken, 1: aborting})
        assert str(caught.value) == expected
    with pytest.raises(HandshakeError) as caught:
        raise_link_failure({2: broken, 1: link(1, hello=True, linked=True)})
    assert str(caught.value) == broken.handshake_failure
