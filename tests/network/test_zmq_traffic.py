"""ZmqTransport over real TCP on 127.0.0.1, once connected: tagged arrays cross in any order and intact (scalars,
empty and 100 MB arrays), traffic is counted, receive deadlines name what was awaited, and what a node may
send or hold (dtypes, the size cap, the buffer budget) is bounded without deadlocks.

Nodes of one test run in threads of this process (``tests.support.nodes``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from network import zmq_setup
from network.errors import ProtocolError, ReceiveTimeout
from network.framing import CHUNK_BYTES, HEADER_SIZE
from network.zmq_transport import ZmqTransport
from tests.support.nodes import Cluster, connected, in_threads


def test_three_parties_exchange_tagged_arrays_in_any_order(cluster: Cluster) -> None:
    everyone = connected(cluster, 3)

    def program(transport: ZmqTransport) -> dict[tuple[int, int], np.ndarray]:
        for peer in transport.peers:
            for tag in range(5):
                transport.send(peer, tag, np.full((2, tag + 1), 10 * transport.rank + tag, dtype=np.int64))
        received = {(peer, tag): transport.recv(peer, tag, op="test") for peer in transport.peers
                    for tag in reversed(range(5))}
        transport.close()
        return received

    results = in_threads([lambda t=t: program(t) for t in everyone])
    for received in results:
        assert not isinstance(received, BaseException), received
        for (peer, tag), array in received.items():
            assert array.shape == (2, tag + 1)
            assert (array == 10 * peer + tag).all()


def test_messages_arriving_early_wait_in_the_mailbox(cluster: Cluster) -> None:
    sender, receiver = connected(cluster, 2)
    for tag in (7, 3, 9):
        sender.send(1, tag, np.array([tag], dtype=np.uint8))
    assert receiver.recv(0, 9).tolist() == [9]
    assert receiver.recv(0, 3).tolist() == [3]
    assert receiver.recv(0, 7).tolist() == [7]


def test_scalars_and_empty_arrays_cross_the_wire(cluster: Cluster) -> None:
    sender, receiver = connected(cluster, 2)
    sender.send(1, 1, np.array(3.5))
    sender.send(1, 2, np.zeros((0, 4), dtype=np.int32))
    sender.send(1, 3, np.arange(3, dtype=">i8"))
    scalar, empty, swapped = receiver.recv(0, 1), receiver.recv(0, 2), receiver.recv(0, 3)
    assert scalar.shape == () and scalar == 3.5
    assert empty.shape == (0, 4) and empty.dtype == np.int32
    assert swapped.dtype == np.dtype("<i8") and swapped.tolist() == [0, 1, 2]


def test_sent_arrays_may_be_modified_right_after_send(cluster: Cluster) -> None:
    sender, receiver = connected(cluster, 2)
    large = np.zeros(1 << 18, dtype=np.int64)
    small = np.zeros(4, dtype=np.int64)
    sender.send(1, 1, large)
    sender.send(1, 2, small)
    large += 1
    small += 1
    assert not receiver.recv(0, 1).any() and not receiver.recv(0, 2).any()


def test_100_megabyte_frame_round_trip(cluster: Cluster) -> None:
    first, second = connected(cluster, 2, recv_timeout=60.0)
    payload = np.arange(100_000_000 // 8, dtype=np.int64)

    def echo() -> None:
        second.send(0, 2, second.recv(0, 1))

    def ask() -> np.ndarray:
        first.send(1, 1, payload)
        return first.recv(1, 2)

    echoed, answer = in_threads([echo, ask], timeout=90.0)
    assert echoed is None
    assert not isinstance(answer, BaseException), answer
    assert answer.shape == payload.shape and np.array_equal(answer, payload)


def test_stats_count_header_and_payload_bytes_of_data_frames(cluster: Cluster) -> None:
    sender, receiver = connected(cluster, 2)
    sender.send(1, 1, np.zeros((3, 4), dtype=np.float64))
    sender.send(1, 2, np.zeros(5, dtype=np.uint8))
    receiver.recv(0, 1)
    receiver.recv(0, 2)
    expected = 2 * HEADER_SIZE + 96 + 5
    assert sender.stats.bytes_sent == {1: expected} and sender.stats.messages_sent == {1: 2}
    assert receiver.stats.bytes_received == {0: expected} and receiver.stats.messages_received == {0: 2}
    # A message of three frames (a DATA and two continuations) counts one header, as the theory of every
    # protocol does: 114 bytes per message.
    sender.send(1, 3, np.zeros(CHUNK_BYTES * 5 // 2, dtype=np.uint8))
    receiver.recv(0, 3)
    expected += HEADER_SIZE + CHUNK_BYTES * 5 // 2
    assert sender.stats.bytes_sent == {1: expected} and sender.stats.messages_sent == {1: 3}
    assert receiver.stats.bytes_received == {0: expected} and receiver.stats.messages_received == {0: 3}


def test_receive_timeout_names_peer_tag_and_operation(cluster: Cluster) -> None:
    _, receiver = connected(cluster, 2, recv_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ReceiveTimeout, match=r"party 0 for open \(tag 42\)") as caught:
        receiver.recv(0, 42, op="open")
    assert caught.value.peer == 0
    assert time.monotonic() - started < 3


def test_send_refuses_what_cannot_cross_the_wire(cluster: Cluster) -> None:
    sender, _ = connected(cluster, 2, max_message_bytes=1000)
    with pytest.raises(ValueError, match="dtype"):
        sender.send(1, 1, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="exceeds"):
        sender.send(1, 1, np.zeros(126, dtype=np.int64))
    with pytest.raises(ValueError, match="not a peer"):
        sender.send(5, 1, np.zeros(3, dtype=np.int64))


def test_a_peer_holding_more_than_its_buffer_budget_here_is_refused(cluster: Cluster) -> None:
    """``max_buffered_bytes`` bounds what one peer's messages hold here, waiting to be taken or incomplete: the
    message that would pass it is refused (ProtocolError naming the peer); taking messages frees their share."""
    megabyte = np.zeros(1 << 17, dtype=np.int64)
    sender, receiver = connected(cluster, 2, max_message_bytes=2 << 20, max_buffered_bytes=7 << 19)
    for tag in (1, 2, 3, 4):
        sender.send(1, tag, megabyte)
    with pytest.raises(ProtocolError, match=r"^party 0 would have \d+ bytes waiting here with tag 4, more than "
                                            r"max_buffered_bytes=3670016"):
        receiver.recv(0, 4)
    for tag in (1, 2, 3):
        assert receiver.recv(0, tag).shape == megabyte.shape
    sender.send(1, 5, megabyte)
    assert receiver.recv(0, 5).shape == megabyte.shape


def test_a_large_message_over_the_budget_is_refused_at_its_first_frame(cluster: Cluster) -> None:
    """A message of several frames is charged its whole declared size when its first frame arrives (that is when
    its buffer is allocated), so a budget that cannot hold it refuses it then, before the rest is received."""
    sender, receiver = connected(cluster, 2, max_message_bytes=CHUNK_BYTES, max_buffered_bytes=CHUNK_BYTES + 4096)
    sender.send(1, 1, np.zeros(CHUNK_BYTES // 2, dtype=np.uint8))
    sender.send(1, 2, np.zeros(CHUNK_BYTES // 2 + 4096, dtype=np.uint8))
    with pytest.raises(ProtocolError, match="^party 0 would have .* with tag 2, more than max_buffered_bytes="):
        receiver.recv(0, 2)


def test_the_buffer_budget_must_hold_a_message_at_the_cap(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="max_buffered_bytes"):
        cluster.node(0, 2, max_message_bytes=1 << 20, max_buffered_bytes=1 << 20)


def test_nodes_sending_each_other_large_messages_before_receiving_do_not_deadlock(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queues of 2 frames at each end; each node sends the other 12 messages of 2 chunks (far more than the queues
    and TCP buffers hold) before receiving any.  A send that finds its queue full keeps moving incoming frames into
    the mailbox, so both finish."""
    monkeypatch.setattr(zmq_setup, "HWM_FRAMES", 2)
    everyone = connected(cluster, 2, recv_timeout=30.0)
    payloads = [np.full(CHUNK_BYTES // 8 + 1, tag, dtype=np.int64) for tag in range(12)]

    def program(node: ZmqTransport) -> list[bool]:
        peer = 1 - node.rank
        for tag, payload in enumerate(payloads):
            node.send(peer, tag, payload)
        return [bool(np.array_equal(node.recv(peer, tag), payload)) for tag, payload in enumerate(payloads)]

    assert in_threads([lambda node=node: program(node) for node in everyone], timeout=120.0) == [[True] * 12] * 2
