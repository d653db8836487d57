"""ZmqTransport at the end of a session, over real TCP on 127.0.0.1: data sent before a close still arrives and
the goodbye is told from a loss (an abort is one), close is idempotent, quick and frees the port (a failed
connect too), and a peer that is killed or frozen is reported by name within 10 seconds to every node waiting
on it.

Nodes run in threads of this process (``tests.support.nodes``); the peer that dies is a spawned process,
killed in ``finally``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from typing import Any

import numpy as np
import pytest

from network.errors import HandshakeError, NetworkError, PeerClosedError, PeerLostError
from network.zmq_transport import ZmqTransport
from tests.support.nodes import (
    HANDSHAKE,
    SESSION,
    Cluster,
    connected,
    in_threads,
    timed,
)


def test_data_sent_before_close_still_arrives_then_bye_is_peer_closed(cluster: Cluster) -> None:
    leaver, stayer = connected(cluster, 2, close_timeout=0.5)
    leaver.send(1, 1, np.arange(3))
    leaver.close()
    assert leaver.closed
    assert stayer.recv(0, 1).tolist() == [0, 1, 2]
    with pytest.raises(PeerClosedError, match="party 0 closed the session") as caught:
        stayer.recv(0, 2, op="mul")
    assert caught.value.peer == 0


def test_abort_is_a_lost_peer_for_the_others(cluster: Cluster) -> None:
    quitter, waiter = connected(cluster, 2)
    quitter.close(abort=True)
    with pytest.raises(PeerLostError, match="party 0 aborted") as caught:
        waiter.recv(0, 1)
    assert caught.value.peer == 0


def test_close_is_idempotent_quick_when_everyone_closes_and_frees_the_port(cluster: Cluster) -> None:
    everyone = connected(cluster, 3)
    endpoints = [transport.endpoint for transport in everyone]
    started = time.monotonic()
    assert in_threads([transport.close for transport in everyone]) == [None] * 3
    assert time.monotonic() - started < 1.5
    for transport in everyone:
        transport.close()
        with pytest.raises(NetworkError, match="closed"):
            transport.recv(1 - transport.rank % 2, 0)
    for endpoint in endpoints:
        again = cluster.node(0, 3, bind=endpoint)
        assert again.endpoint == endpoint
        again.close()
        port = int(endpoint.rsplit(":", 1)[1])
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))


def test_failed_connect_frees_the_port(cluster: Cluster) -> None:
    lonely = cluster.node(0, 2, connect_timeout=0.2)
    endpoint = lonely.endpoint
    with pytest.raises(HandshakeError):
        lonely.connect({1: "tcp://127.0.0.1:9"})
    cluster.node(0, 2, bind=endpoint).close()


# ------------------------------------------------------------------------------- peers that die or freeze


def _peer_process(rank: int, keys: tuple[bytes, bytes], roster: dict[int, bytes], to_parent: Any,
                  from_parent: Any) -> None:
    """A node in its own process: bind, report the endpoint, connect, then wait for a message never sent."""
    transport = ZmqTransport(rank, public_key=keys[0], secret_key=keys[1], roster_keys=roster, session_id=SESSION,
                             handshake=HANDSHAKE, recv_timeout=300.0, connect_timeout=30.0,
                             names={node: f"party {node}" for node in roster})
    to_parent.put(transport.endpoint)
    transport.connect(from_parent.get(timeout=30))
    to_parent.put("connected")
    transport.recv(0, 999)


@pytest.mark.processes
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_a_peer_that_dies_or_freezes_is_reported_within_10_seconds(cluster: Cluster, stop: signal.Signals) -> None:
    """Party 1 runs in its own process; party 0 waits on it, party 2 waits on party 0 (alive), both must raise."""
    context = multiprocessing.get_context("spawn")
    to_parent, from_parent = context.Queue(), context.Queue()
    survivors = [cluster.node(0, 3, recv_timeout=60.0, connect_timeout=30.0),
                 cluster.node(2, 3, recv_timeout=60.0, connect_timeout=30.0)]
    peer = context.Process(target=_peer_process, daemon=True,
                           args=(1, cluster.keypair(1), cluster.roster(3), to_parent, from_parent))
    peer.start()
    try:
        endpoints = {1: to_parent.get(timeout=30), **{node.rank: node.endpoint for node in survivors}}
        from_parent.put({node: endpoint for node, endpoint in endpoints.items() if node != 1})
        others = [{node: endpoint for node, endpoint in endpoints.items() if node != mine.rank} for mine in survivors]
        assert in_threads([lambda i=i: survivors[i].connect(others[i]) for i in range(2)]) == [None, None]
        assert to_parent.get(timeout=30) == "connected"
        os.kill(peer.pid, stop)
        started = time.monotonic()
        errors = in_threads([lambda: timed(survivors[0].recv, 1, 7, op="reveal"),
                             lambda: timed(survivors[1].recv, 0, 7, op="mul")])
        for (error, seconds), waited_on in zip(errors, ("reveal (tag 7) from party 1", "mul (tag 7) from party 0")):
            assert isinstance(error, PeerLostError), error
            assert str(error) == f"lost party 1 while waiting for {waited_on}" and error.peer == 1
            assert seconds < 10
        assert time.monotonic() - started < 10
    finally:
        if peer.is_alive():
            os.kill(peer.pid, signal.SIGCONT)
        peer.kill()
        peer.join(10)
        to_parent.close()
        from_parent.close()
