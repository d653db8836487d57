"""The Transport contract, run on both transports: what every protocol relies on, whatever carries it.

In-process (LocalNetwork) and ZeroMQ + CurveZMQ on 127.0.0.1 must behave the same: tagged messages meet their
reader in any order, large frames arrive whole, a second message under a tag still waiting is refused, a lost peer
is an error naming it, a goodbye is distinguishable from a loss, and traffic is counted alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from network import (
    DuplicateTagError,
    LocalNetwork,
    PeerClosedError,
    PeerLostError,
    ReceiveTimeout,
    Transport,
)
from tests.support.nodes import Cluster, connected, in_threads

NAMES = {0: "party 0", 1: "party 1", 2: "party 2"}


@contextlib.contextmanager
def _mesh(kind: str, recv_timeout: float) -> Iterator[list[Transport]]:
    """Three connected transports of one kind; all closed on exit."""
    if kind == "inproc":
        network = LocalNetwork(3, names=NAMES, recv_timeout=recv_timeout)
        nodes: list[Transport] = [network.transport(rank) for rank in range(3)]
        try:
            yield nodes
        finally:
            for node in nodes:
                node.close(abort=True)
        return
    cluster = Cluster()
    try:
        yield connected(cluster, 3, recv_timeout=recv_timeout)
    finally:
        cluster.close()


@pytest.fixture(params=["inproc", "zmq"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def mesh(kind: str) -> Iterator[list[Transport]]:
    with _mesh(kind, recv_timeout=10.0) as nodes:
        yield nodes


def _everyone(nodes: list[Transport], task: Callable[[Transport], object]) -> list[object]:
    return in_threads([lambda node=node: task(node) for node in nodes])


def test_frames_meet_their_reader_in_any_order(mesh: list[Transport]) -> None:
    """Each node sends tags 1..5 to every peer, then reads them in reverse order: every array arrives intact."""

    def program(node: Transport) -> bool:
        for tag in range(1, 6):
            for peer in node.peers:
                node.send(peer, tag, np.full(tag, node.rank * 100 + tag, dtype=np.int64))
        for tag in reversed(range(1, 6)):
            for peer in reversed(node.peers):
                got = node.recv(peer, tag)
                assert got.tolist() == [peer * 100 + tag] * tag
        return True

    assert _everyone(mesh, program) == [True, True, True]


def test_a_100_megabyte_frame_arrives_whole(mesh: list[Transport]) -> None:
    payload = np.arange(100 * 2**20 // 8, dtype=np.int64)

    def program(node: Transport) -> object:
        if node.rank == 0:
            node.send(1, 1, payload)
            return None
        if node.rank == 1:
            got = node.recv(0, 1)
            return bool(got.shape == payload.shape and got[-1] == payload[-1] and np.array_equal(got, payload))
        return None

    assert _everyone(mesh, program)[1] is True


def test_a_second_message_under_a_waiting_tag_is_refused_by_its_receiver(mesh: list[Transport]) -> None:
    """Party 0 sends tag 5 twice, then tag 6.  Party 1 is told, by a DuplicateTagError (a ProtocolError) raised on
    its side, on the receive that meets the duplicate; the first copy and the later message still arrive."""
    sender, receiver = mesh[0], mesh[1]
    sender.send(1, 5, np.array([1], dtype=np.int64))
    sender.send(1, 5, np.array([2], dtype=np.int64))
    sender.send(1, 6, np.array([3], dtype=np.int64))
    with pytest.raises(DuplicateTagError, match="^party 0 sent tag 5 to party 1 twice$"):
        receiver.recv(0, 6)
    assert receiver.recv(0, 5).tolist() == [1]
    assert receiver.recv(0, 6).tolist() == [3]


def test_a_peer_that_dies_is_named_by_those_waiting(mesh: list[Transport]) -> None:
    """Party 2 aborts mid-session; parties 0 and 1, waiting on it, get PeerLostError naming party 2."""

    def program(node: Transport) -> object:
        if node.rank == 2:
            node.close(abort=True)
            return None
        try:
            node.recv(2, 1, op="mul")
        except PeerLostError as error:
            return error
        return "no error"

    results = _everyone(mesh, program)
    for error in results[:2]:
        assert isinstance(error, PeerLostError), error
        assert "party 2" in str(error)


def test_a_goodbye_is_not_a_loss(mesh: list[Transport]) -> None:
    """Data sent before a normal close still arrives; waiting for more is PeerClosedError, not a loss."""

    def program(node: Transport) -> object:
        if node.rank == 2:
            node.send(0, 1, np.array([7], dtype=np.int64))
            node.close()
            return None
        if node.rank == 0:
            first = node.recv(2, 1).tolist()
            try:
                node.recv(2, 2)
            except PeerClosedError as error:
                return first, type(error).__name__
        return None

    results = _everyone(mesh, program)
    assert results[0] == ([7], "PeerClosedError")


def test_receive_deadline_names_peer_and_operation(kind: str) -> None:
    with _mesh(kind, recv_timeout=0.5) as nodes:
        with pytest.raises(ReceiveTimeout, match="party 1.*truncate|truncate.*party 1"):
            nodes[0].recv(1, 42, op="truncate")


def test_traffic_is_counted_alike(mesh: list[Transport]) -> None:
    """Header plus payload bytes and message counts, per peer, the same on both transports."""

    def program(node: Transport) -> object:
        if node.rank == 0:
            node.send(1, 1, np.zeros(1000, dtype=np.int64))
            return dict(node.stats.bytes_sent), dict(node.stats.messages_sent)
        if node.rank == 1:
            node.recv(0, 1)
            return dict(node.stats.bytes_received)
        return None

    results = _everyone(mesh, program)
    assert results[0] == ({1: 114 + 8000}, {1: 1})
    assert results[1] == {0: 114 + 8000}
