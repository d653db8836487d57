"""ZmqTransport over real TCP on 127.0.0.1: set-up, traffic, refusals, lost peers and clean shutdown.

Nodes of one test run in threads of this process (each transport has its own ZeroMQ context); a peer that has to
die, and the party that is sent garbage, are spawned processes, killed in ``finally``.
"""

from __future__ import annotations

import multiprocessing
import json
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from network.base import WIRE_DTYPES
from network.errors import HandshakeError, NetworkError, PeerClosedError, PeerLostError, ProtocolError, ReceiveTimeout
from network import zmq_setup
from network.framing import (CHUNK_BYTES, HEADER_SIZE, PROTOCOL_VERSION, Kind, decode_header, encode_header,
                             json_payload)
from network.roster import Roster, generate_keypair, read_public_key, read_secret_key, write_keypair
from network.zmq_transport import ZmqTransport
from tests.support.frames import FAMILIES as FUZZ_FAMILIES
from tests.support.frames import SEED as FUZZ_SEED
from tests.support.frames import receive

SESSION = b"test-session-id!"
HANDSHAKE = {"ring_bits": 64, "frac_bits": 16, "parties": 3}
FAST = {"recv_timeout": 10.0, "connect_timeout": 10.0, "close_timeout": 2.0}


class Cluster:
    """Keys and transports of one test; everything it made is aborted and closed at teardown."""

    def __init__(self) -> None:
        self.transports: list[ZmqTransport] = []
        self.keys: dict[int, tuple[bytes, bytes]] = {}

    def keypair(self, node: int) -> tuple[bytes, bytes]:
        if node not in self.keys:
            self.keys[node] = zmq.curve_keypair()
        return self.keys[node]

    def roster(self, n: int) -> dict[int, bytes]:
        return {node: self.keypair(node)[0] for node in range(n)}

    def node(self, rank: int, n: int, *, keys: tuple[bytes, bytes] | None = None,
             roster: dict[int, bytes] | None = None, **options: Any) -> ZmqTransport:
        public, secret = keys or self.keypair(rank)
        settings = {"session_id": SESSION, "handshake": HANDSHAKE, **FAST, **options}
        transport = ZmqTransport(
            rank, public_key=public, secret_key=secret, roster_keys=roster or self.roster(n),
            names={node: f"party {node}" for node in range(n)}, **settings,
        )
        self.transports.append(transport)
        return transport

    def nodes(self, n: int, **options: Any) -> list[ZmqTransport]:
        return [self.node(rank, n, **options) for rank in range(n)]

    def close(self) -> None:
        for transport in self.transports:
            transport.close(abort=True)
        assert not [thread for thread in threading.enumerate() if thread.name == "smpc-zap"], "a ZAP thread leaked"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        yield made
    finally:
        made.close()


def in_threads(tasks: list[Callable[[], Any]], timeout: float = 30.0) -> list[Any]:
    """Run each task in its own thread; its result, or the exception it raised, in task order."""
    results: list[Any] = [None] * len(tasks)

    def run(index: int) -> None:
        try:
            results[index] = tasks[index]()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a node hung"
    return results


def addresses_for(transport: ZmqTransport, everyone: list[ZmqTransport]) -> dict[int, str]:
    return {other.rank: other.endpoint for other in everyone if other is not transport}


def connect_all(everyone: list[ZmqTransport]) -> list[Any]:
    return in_threads([lambda t=t: t.connect(addresses_for(t, everyone)) for t in everyone])


def connected(cluster: Cluster, n: int, **options: Any) -> list[ZmqTransport]:
    everyone = cluster.nodes(n, **options)
    assert connect_all(everyone) == [None] * n
    return everyone


# --------------------------------------------------------------------------------------------------- traffic


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
    for rank, received in enumerate(results):
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


# -------------------------------------------------------------------------------------------------- set-up


def test_unknown_key_is_refused_within_seconds(cluster: Cluster) -> None:
    honest = cluster.node(0, 2, connect_timeout=0.5)
    stranger_keys = zmq.curve_keypair()
    stranger = cluster.node(1, 2, keys=stranger_keys, roster={0: cluster.keypair(0)[0], 1: stranger_keys[0]})
    error, seconds = _timed(stranger.connect, {0: honest.endpoint})
    assert isinstance(error, HandshakeError) and "party 0 refused our key" in str(error), error
    assert seconds < 3 and stranger.closed
    assert honest.refused_connections == 1 and honest.last_refused_key == stranger_keys[0][:8].decode()
    # The honest node does not give up on a refusal (anyone can present a stranger's key) but reports it.
    with pytest.raises(HandshakeError, match=r"refused 1 connection\(s\) from a key not on the roster") as caught:
        honest.connect({1: "tcp://127.0.0.1:9"})
    assert stranger_keys[0][:8].decode() in str(caught.value) and stranger_keys[0].decode() not in str(caught.value)


def test_with_its_zap_handler_stopped_a_node_still_refuses_an_unlisted_key(cluster: Cluster) -> None:
    """libzmq admits any CURVE client when no ZAP handler answers, unless ZAP_ENFORCE_DOMAIN is set: the
    stranger's handshake must fail, and nothing it sends may reach the node."""
    victim, _ = connected(cluster, 2)
    victim._zap.close()
    stranger = zmq.Context()
    try:
        dealer = stranger.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.curve_publickey, dealer.curve_secretkey = zmq.curve_keypair()
        dealer.curve_serverkey = cluster.keypair(0)[0]
        monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)
        dealer.connect(victim.endpoint)
        array = np.arange(3, dtype=np.int64)
        dealer.send_multipart([encode_header(Kind.DATA, session_id=SESSION, sender=1, seq=1, tag=1, array=array),
                               array.tobytes()])
        assert monitor.poll(30_000), "no handshake outcome"  # generous: any outcome at all ends the wait
        event = recv_monitor_message(monitor)["event"]
        assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert not victim._router.poll(500), "a message from a key not on the roster reached the node"
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)
    finally:
        stranger.destroy(linger=0)


def _timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[BaseException | None, float]:
    """The exception ``function(*args, **kwargs)`` raised (None if none) and how long it took."""
    started = time.monotonic()
    try:
        function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - handed back to the test
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def test_wrong_pinned_key_fails_the_curve_handshake(cluster: Cluster) -> None:
    roster = cluster.roster(2)
    confused = cluster.node(0, 2, roster={0: roster[0], 1: zmq.curve_keypair()[0]})
    other = cluster.node(1, 2, connect_timeout=3.0)
    confused_error, other_error = connect_all([confused, other])
    assert isinstance(confused_error, HandshakeError)
    assert "CURVE handshake with party 1" in str(confused_error)
    assert isinstance(other_error, HandshakeError)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"handshake": {**HANDSHAKE, "frac_bits": 12}}, ("party 1 has frac_bits=12, we have frac_bits=16",
                                                         "party 0 has frac_bits=16, we have frac_bits=12")),
        ({"handshake": {"ring_bits": 64, "frac_bits": 16}}, ("party 1 has no parties, we have parties=3",
                                                             "party 0 has parties=3, we have no parties")),
        ({"session_id": b"another-session!"}, ("party 1 is in session", "party 0 is in session")),
    ],
)
def test_mismatched_set_up_is_refused_on_both_sides(cluster: Cluster, override: dict, expected: tuple) -> None:
    first = cluster.node(0, 2)
    second = cluster.node(1, 2, **override)
    errors = connect_all([first, second])
    for error, message in zip(errors, expected):
        assert isinstance(error, HandshakeError), error
        assert message in str(error)


def test_connect_times_out_naming_the_missing_peer(cluster: Cluster) -> None:
    lonely = cluster.node(0, 2, connect_timeout=0.5)
    with pytest.raises(HandshakeError, match="party 1 at tcp://127.0.0.1:9 .its HELLO missing"):
        lonely.connect({1: "tcp://127.0.0.1:9"})


# ------------------------------------------------------------------------------------- hostile frames


def _forged_frames(case: str) -> list[list[bytes]]:
    """Frames a node holding party 1's keys could inject on a second connection."""
    def data(*, seq: int, sender: int = 1, session: bytes = SESSION, array: np.ndarray | None = None) -> list[bytes]:
        array = np.zeros(2, dtype=np.int64) if array is None else array
        return [encode_header(Kind.DATA, session_id=session, sender=sender, seq=seq, tag=1, array=array),
                array.tobytes()]

    def tampered(offset: int, value: bytes) -> list[list[bytes]]:
        header, payload = data(seq=1)
        return [[header[:offset] + value + header[offset + len(value):], payload]]

    def more(*, seq: int, tag: int = 1, chunk: bytes = bytes(8)) -> list[bytes]:
        part = np.frombuffer(chunk, dtype=np.uint8)
        return [encode_header(Kind.MORE, session_id=SESSION, sender=1, seq=seq, tag=tag, array=part), chunk]

    def first(*, tag: int = 1) -> list[bytes]:
        """The first frame of a 24-byte message, carrying its first 8 bytes."""
        header = encode_header(Kind.DATA, session_id=SESSION, sender=1, seq=1, tag=tag, array=np.zeros(3, np.int64))
        return [header, bytes(8)]

    big = np.zeros(1024, dtype=np.int64)
    return {
        "replay": [[encode_header(Kind.HELLO, session_id=SESSION, sender=1, seq=0, tag=0, array=json_payload({})),
                    json_payload({}).tobytes()]],
        "replay-data": [data(seq=1)],  # byte for byte the DATA frame party 1 itself sent as frame 1
        "skip": [data(seq=5)],
        "sender": [data(seq=1, sender=0)],
        "session": [data(seq=1, session=b"another-session!")],
        "version": tampered(4, bytes([PROTOCOL_VERSION + 1])),
        "dtype": tampered(6, bytes([len(WIRE_DTYPES)])),
        "shape": tampered(HEADER_SIZE - 64, (3).to_bytes(8, "little")),  # shape[0]: 3 int64 in a 16-byte frame
        "oversized": [data(seq=1, array=big)],
        "oversized-first": [[data(seq=1, array=big)[0], bytes(2048)]],  # the first part of a too large message
        "oversized-chunks": [[data(seq=1, array=big)[0], *[bytes(2048)] * 4]],
        "extra-part": [[data(seq=1)[0], bytes(8), bytes(8)]],  # the 16-byte payload split in two parts
        "garbage": [[b"not a header", b""]],
        "header-only": [data(seq=1)[:1]],
        "orphan-continuation": [more(seq=1)],
        "overrun": [first(), more(seq=2, chunk=bytes(24))],
        "continuation-of-another-tag": [first(), more(seq=2, tag=2, chunk=bytes(16))],
        "interleaved": [first(), data(seq=2)],
    }[case]


#: Options of both nodes in a forged-frame case, where the defaults do not do.
_FORGED_OPTIONS: dict[str, dict[str, Any]] = {"oversized": {"max_message_bytes": 4096},
                                              "oversized-first": {"max_message_bytes": 4096},
                                              "oversized-chunks": {"max_message_bytes": 4096}}
_PARTS = "part(s); every message is a header and one payload part"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("replay", "replayed or out-of-sequence frame from party 1 (sequence 0, expected 1)"),
        ("replay-data", "replayed or out-of-sequence frame from party 1 (sequence 1, expected 2)"),
        ("skip", "replayed or out-of-sequence frame from party 1 (sequence 5, expected 1)"),
        ("sender", "claims to come from party 0"),
        ("session", "bad frame from party 1: frame for another session"),
        ("version", f"bad frame from party 1: protocol version {PROTOCOL_VERSION + 1}, "
                    f"we speak {PROTOCOL_VERSION}"),
        ("dtype", "bad frame from party 1: unknown dtype code 5"),
        ("shape", "bad frame from party 1: shape (3,) of int64 needs 24 bytes but the frame declares 16"),
        ("oversized", "bad frame from party 1: frame declares 8192 bytes, more than the cap of 4096"),
        ("oversized-first", "bad frame from party 1: frame declares 8192 bytes, more than the cap of 4096"),
        ("oversized-chunks", f"bad frame from party 1: message with 5 {_PARTS}"),
        ("extra-part", f"bad frame from party 1: message with 3 {_PARTS}"),
        ("garbage", "bad frame from party 1"),
        ("header-only", f"bad frame from party 1: message with 1 {_PARTS}"),
        ("orphan-continuation", "bad frame from party 1: continuation of tag 1 without a first frame"),
        ("overrun", "bad frame from party 1: continuation of tag 1 overruns it (8 + 24 bytes of 24)"),
        ("continuation-of-another-tag", "bad frame from party 1: continuation of tag 2 while tag 1 is incomplete"),
        ("interleaved", "bad frame from party 1: tag 1 starts while tag 1 is incomplete (8 of 24 bytes)"),
    ],
)
def test_forged_frames_are_protocol_errors(cluster: Cluster, case: str, message: str) -> None:
    """Each defect gets its own message naming the sender, within seconds (recv_timeout is 10 s)."""
    victim, honest = connected(cluster, 2, **_FORGED_OPTIONS.get(case, {}))
    tag = 1
    if case == "replay-data":
        honest.send(0, 1, np.zeros(2, dtype=np.int64))
        assert victim.recv(1, 1).tolist() == [0, 0]
        tag = 2
    public, secret = cluster.keypair(1)
    forger = zmq.Context()
    try:
        dealer = forger.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.curve_publickey, dealer.curve_secretkey = public, secret
        dealer.curve_serverkey = cluster.keypair(0)[0]
        dealer.connect(victim.endpoint)
        for parts in _forged_frames(case):
            dealer.send_multipart(parts)
        error, seconds = _timed(victim.recv, 1, tag)
        assert isinstance(error, ProtocolError), error
        assert message in str(error)
        assert seconds < 5
        dealer.close()
    finally:
        forger.destroy(linger=0)


GARBAGE_MESSAGES = 200


def _garbage(count: int) -> list[list[bytes]]:
    """``count`` messages a holder of party 1's keys could send party 0 after set-up, none of them acceptable:
    valid DATA frames (the very next one party 0 expects) put through the mutations of ``tests.support.frames``,
    cut into 1 to 4 payload parts or sent as a header alone.  A mutant that party 0 would take as party 1's next frame
    (it would use up that sequence number) is skipped, so each message must end in exactly one ProtocolError."""
    rng = random.Random(f"{FUZZ_SEED}/live")
    mutations = [mutate for family, mutate in FUZZ_FAMILIES.items() if family != "chunking"]
    messages: list[list[bytes]] = []
    while len(messages) < count:
        array = np.arange(rng.randint(0, 64), dtype=rng.choice(WIRE_DTYPES))
        header = encode_header(Kind.DATA, session_id=SESSION, sender=1, seq=1, tag=1, array=array)
        header, (payload,) = rng.choice(mutations)(rng, header, array.tobytes())
        cuts = sorted(rng.randint(0, len(payload)) for _ in range(rng.randint(0, 3)))
        chunks = [payload[start:end] for start, end in zip([0, *cuts], [*cuts, len(payload)])]
        if rng.random() < 0.05:
            chunks = []
        if len(chunks) == 1 and _next_frame_of_party_1(header, chunks[0]):
            continue
        messages.append([header, *chunks])
    return messages


def _next_frame_of_party_1(header: bytes, payload: bytes) -> bool:
    """Whether party 0, fresh from set-up, would take ``[header, payload]`` as party 1's next frame: it passes
    every check that comes before the frame's sequence number is used up (see ``ZmqTransport._accept``)."""
    try:
        head = decode_header(header, session_id=SESSION, max_bytes=1 << 30)
        if head.sender != 1 or head.seq != 1 or head.kind == Kind.HELLO:
            return False
        receive(header, [payload], session_id=SESSION, max_bytes=1 << 30, budget=1 << 40)
    except ProtocolError:
        return False
    return True


def _garbage_victim(keys: tuple[bytes, bytes], roster: dict[int, bytes], to_parent: Any, from_parent: Any) -> None:
    """Party 0 in its own process: connect, then report how each forged message was refused, whether party 1's
    next real message still arrives, and how long a normal close takes."""
    transport = ZmqTransport(0, public_key=keys[0], secret_key=keys[1], roster_keys=roster, session_id=SESSION,
                             handshake=HANDSHAKE, names={node: f"party {node}" for node in roster},
                             **{**FAST, "recv_timeout": 5.0})
    to_parent.put(transport.endpoint)
    transport.connect(from_parent.get(timeout=30))
    to_parent.put("connected")
    refusals: list[tuple[str, str, float]] = []
    while len(refusals) < GARBAGE_MESSAGES:
        error, seconds = _timed(transport.recv, 1, 1, op="after garbage")  # party 1 sends tag 1 only later
        refusals.append((type(error).__name__, str(error), seconds))
        if not isinstance(error, ProtocolError):
            break
    to_parent.put(refusals)
    try:
        received: Any = transport.recv(1, 1, op="after garbage").tolist()
    except NetworkError as error:
        received = f"{type(error).__name__}: {error}"
    started = time.monotonic()
    transport.close()
    to_parent.put((received, time.monotonic() - started))


def test_a_party_process_refuses_200_garbage_messages_then_works_and_closes(cluster: Cluster) -> None:
    """Party 0 runs in its own process; a forger with party 1's keys sends it 200 mutated messages over CurveZMQ.
    Each one is a ProtocolError naming party 1, raised within seconds; then the real party 1's message still
    arrives, and both close cleanly (the process exits 0)."""
    context = multiprocessing.get_context("spawn")
    to_parent, from_parent = context.Queue(), context.Queue()
    honest = cluster.node(1, 2)
    victim = context.Process(target=_garbage_victim, daemon=True,
                             args=(cluster.keypair(0), cluster.roster(2), to_parent, from_parent))
    victim.start()
    forger = zmq.Context()
    try:
        endpoint = to_parent.get(timeout=30)
        from_parent.put({1: honest.endpoint})
        honest.connect({0: endpoint})
        assert to_parent.get(timeout=30) == "connected"
        dealer = forger.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.curve_publickey, dealer.curve_secretkey = cluster.keypair(1)
        dealer.curve_serverkey = cluster.keypair(0)[0]
        dealer.connect(endpoint)
        started = time.monotonic()
        for parts in _garbage(GARBAGE_MESSAGES):
            dealer.send_multipart(parts)
        refusals = to_parent.get(timeout=60)
        assert time.monotonic() - started < 10
        unexpected = [(kind, message) for kind, message, _ in refusals
                      if kind != "ProtocolError" or "party 1" not in message]
        assert not unexpected and len(refusals) == GARBAGE_MESSAGES, unexpected[:3]
        assert max(seconds for _, _, seconds in refusals) < 3
        honest.send(0, 1, np.arange(3))
        honest.close()
        received, close_seconds = to_parent.get(timeout=30)
        assert received == [0, 1, 2] and close_seconds < 3
        victim.join(10)
        assert victim.exitcode == 0
    finally:
        forger.destroy(linger=0)
        victim.kill()
        victim.join(10)
        to_parent.close()
        from_parent.close()


def test_a_peer_speaking_another_protocol_version_is_refused_at_set_up(cluster: Cluster) -> None:
    victim = cluster.node(0, 2)
    public, secret = cluster.keypair(1)
    impostor = zmq.Context()
    try:
        server, client = impostor.socket(zmq.ROUTER), impostor.socket(zmq.DEALER)
        server.curve_server, server.curve_publickey, server.curve_secretkey = True, public, secret
        client.curve_publickey, client.curve_secretkey = public, secret
        client.curve_serverkey = cluster.keypair(0)[0]
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.connect(victim.endpoint)
        hello = json_payload({"rank": 1, "session": SESSION.hex(), "handshake": HANDSHAKE})
        header = bytearray(encode_header(Kind.HELLO, session_id=SESSION, sender=1, seq=0, tag=0, array=hello))
        header[4] = PROTOCOL_VERSION - 1
        client.send_multipart([bytes(header), hello.tobytes()])
        error, seconds = _timed(victim.connect, {1: f"tcp://127.0.0.1:{port}"})
        assert isinstance(error, HandshakeError), error
        assert (f"bad frame from party 1: protocol version {PROTOCOL_VERSION - 1}, we speak {PROTOCOL_VERSION}"
                in str(error))
        assert seconds < 5 and victim.closed
    finally:
        impostor.destroy(linger=0)


# --------------------------------------------------------------------------------------------- shutdown


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
        errors = in_threads([lambda: _timed(survivors[0].recv, 1, 7, op="reveal"),
                             lambda: _timed(survivors[1].recv, 0, 7, op="mul")])
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


# ------------------------------------------------------------------------------------ key files and roster


def test_keypair_files_round_trip_with_a_private_secret_file(tmp_path: Path) -> None:
    public = write_keypair(tmp_path / "party0")
    assert (tmp_path / "party0.key").stat().st_mode & 0o777 == 0o600
    assert read_secret_key(tmp_path / "party0.key")[0] == public == read_public_key(tmp_path / "party0.pub")
    assert "secret" not in (tmp_path / "party0.pub").read_text().replace("secret key", "")
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "party0")
    assert write_keypair(tmp_path / "party0", overwrite=True) != public
    with pytest.raises(ValueError, match="no secret-key"):
        read_secret_key(tmp_path / "party0.pub")
    with pytest.raises(ValueError, match="does not exist"):
        read_secret_key(tmp_path / "missing.key")
    (tmp_path / "bad.pub").write_text('public-key = "tooshort"\n')
    with pytest.raises(ValueError, match="not a 40-character Z85 key"):
        read_public_key(tmp_path / "bad.pub")


def _roster_dict(n: int = 3) -> dict[str, Any]:
    nodes = [{"address": f"tcp://127.0.0.1:{7000 + node}", "public_key": generate_keypair()[0].decode()}
             for node in range(n + 1)]
    return {"session": "study-7", "frac_bits": 16, "parties": nodes[:n], "dealer": nodes[n]}


def test_roster_loads_saves_and_derives_ids(tmp_path: Path) -> None:
    data = _roster_dict()
    data["parties"][0]["bind"] = "tcp://0.0.0.0:7000"
    (tmp_path / "roster.json").write_text(json.dumps(data))
    roster = Roster.load(tmp_path / "roster.json")
    assert (roster.n_parties, roster.dealer_id, roster.frac_bits) == (3, 3, 16)
    assert roster.addresses[3] == "tcp://127.0.0.1:7003" and roster.bind_addresses[0] == "tcp://0.0.0.0:7000"
    assert roster.public_keys[1] == data["parties"][1]["public_key"].encode()
    assert roster.names == {0: "party 0", 1: "party 1", 2: "party 2", 3: "dealer"}
    assert len(roster.session_id) == 16 and roster.session_id != Roster.from_dict({**data, "session": "x"}).session_id
    roster.save(tmp_path / "copy.json")
    assert Roster.load(tmp_path / "copy.json") == roster


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["parties"].pop() and d["parties"].pop(), "at least 2 parties"),
        (lambda d: d["parties"][2].update(public_key="abc"),
         "roster entry for party 2: public_key is not a 40-character Z85 key"),
        (lambda d: d["dealer"].update(address=d["parties"][0]["address"]), "party 0 and dealer have the same address"),
        (lambda d: d["dealer"].update(public_key=d["parties"][1]["public_key"]), "same public_key"),
        (lambda d: d["parties"][1].update(address="127.0.0.1:7001"), "party 1: address must look like tcp://host:port"),
        (lambda d: d["parties"][1].update(address="tcp://*:7001"), "not the wildcard"),
        (lambda d: d["parties"][1].update(address="tcp://h:70000"), "port in 1..65535"),
        (lambda d: d.update(session=""), "session"),
        (lambda d: d.update(frac_bits=64), "frac_bits"),
        (lambda d: d.update(extra=1), "unknown fields"),
    ],
)
def test_roster_validation_says_what_to_fix(tmp_path: Path, edit: Callable[[dict], Any], message: str) -> None:
    data = _roster_dict()
    edit(data)
    (tmp_path / "roster.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        Roster.load(tmp_path / "roster.json")


def test_nodes_set_up_from_a_roster_talk(cluster: Cluster) -> None:
    keys = {node: generate_keypair() for node in range(3)}
    data = _roster_dict(2)
    for node, entry in enumerate([*data["parties"], data["dealer"]]):
        entry["public_key"] = keys[node][0].decode()
    roster = Roster.from_dict(data)
    everyone = [
        ZmqTransport(node, public_key=keys[node][0], secret_key=keys[node][1], roster_keys=roster.public_keys,
                     session_id=roster.session_id, handshake={"frac_bits": roster.frac_bits}, names=roster.names,
                     **{**FAST, "recv_timeout": 0.3})
        for node in range(3)
    ]
    cluster.transports.extend(everyone)
    assert connect_all(everyone) == [None] * 3
    everyone[roster.dealer_id].send(0, 1, np.arange(3))
    assert everyone[0].recv(roster.dealer_id, 1).tolist() == [0, 1, 2]
    with pytest.raises(ReceiveTimeout, match=r"no message from dealer for triple \(tag 2\)"):
        everyone[1].recv(roster.dealer_id, 2, op="triple")
