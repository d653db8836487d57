"""ZmqTransport against a peer that holds party 1's keys and sends what party 1 never would, over real TCP on
127.0.0.1: each forged frame (replayed, out of sequence, another session or version, undecodable, oversized,
cut or interleaved wrongly) is a ProtocolError naming the sender within seconds; and a party in its own
process refuses 200 mutated messages (``tests.support.frames``' mutations), then still works and closes.

Nodes run in threads of this process (``tests.support.nodes``); the party sent garbage is a spawned process,
killed in ``finally``.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

import numpy as np
import pytest
import zmq

from network.base import WIRE_DTYPES
from network.errors import NetworkError, ProtocolError
from network.framing import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    Kind,
    decode_header,
    encode_header,
    json_payload,
)
from network.zmq_transport import ZmqTransport
from tests.support.frames import FAMILIES as FUZZ_FAMILIES
from tests.support.frames import SEED as FUZZ_SEED
from tests.support.frames import receive
from tests.support.nodes import (
    FAST,
    HANDSHAKE,
    SESSION,
    Cluster,
    connected,
    curve_client,
    timed,
)


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
        dealer = curve_client(forger, (public, secret), cluster.keypair(0)[0])
        dealer.connect(victim.endpoint)
        for parts in _forged_frames(case):
            dealer.send_multipart(parts)
        error, seconds = timed(victim.recv, 1, tag)
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
        error, seconds = timed(transport.recv, 1, 1, op="after garbage")  # party 1 sends tag 1 only later
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


@pytest.mark.processes
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
        dealer = curve_client(forger, cluster.keypair(1), cluster.keypair(0)[0])
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
