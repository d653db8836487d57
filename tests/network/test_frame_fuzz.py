"""Frame decoder under volume: 25,000 hostile messages per run, each one decodes to a canonical frame or is a
ProtocolError, and a frame that claims a huge size is refused before anything of that size is allocated.

``test_framing.py`` checks each field's own refusal and fuzzes raw header bytes.  This file adds volume (a
seeded generator, so the count does not depend on the hypothesis profile) and what else a peer or a caller can
vary: how the payload is cut into a first frame and continuations, which buffer type carries it, the size cap,
the per-peer budget and the session check.  A mutation may produce a valid message (a payload bit flip, a shape
rewritten together with its length); that is fine as long as it is exactly what its header says:
``encode_header`` of the decoded array must give back the header byte for byte, and the array must hold the
payload's bytes.  Messages go through the receiver's real path: ``decode_header``, then ``whole_frame`` for
control frames or the ``Mailbox`` (which assembles continuations) for data.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
from collections import Counter
from typing import Any, Callable

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from network.base import WIRE_DTYPES
from network.delivery import MESSAGE_CHARGE_BYTES, Mailbox
from network.errors import ProtocolError
from network.framing import (
    HEADER_FORMAT,
    HEADER_SIZE,
    MAX_NDIM,
    Kind,
    decode_frame,
    decode_header,
    encode_header,
    whole_frame,
)

SESSION = bytes(range(16))
OTHER_SESSION = b"another-session!"
MAX_BYTES = 1 << 20
#: The receiving mailbox's per-peer budget in the fuzz runs: larger than any payload generated, far below the
#: largest caps tried, so a header claiming more than it is refused before its buffer is allocated.
BUDGET = 16 << 20
SEED = 20240611
FRAMES_PER_FAMILY = 5_000
_U64_MAX = (1 << 64) - 1

# Field indices of HEADER_FORMAT.
MAGIC_F, VERSION_F, KIND_F, DTYPE_F, NDIM_F, SESSION_F, SENDER_F, SEQ_F, TAG_F, LENGTH_F = range(10)
SHAPE_F = tuple(range(10, 10 + MAX_NDIM))

_U64_EDGES = (
    0, 1, 2, 3, 7, 8, 9, 255, 256, MAX_BYTES // 8, MAX_BYTES - 1, MAX_BYTES, MAX_BYTES + 1, (1 << 31) - 1,
    1 << 31, (1 << 32) - 1, 1 << 32, (1 << 32) + 1, 1 << 53, 1 << 61, 1 << 62, (1 << 63) - 1, 1 << 63,
    (1 << 63) + 1, _U64_MAX - 7, _U64_MAX - 1, _U64_MAX,
)
#: Values a field is overwritten with: every edge of its range, and the values just past the valid ones.
EXTREMES: dict[int, tuple[Any, ...]] = {
    MAGIC_F: (b"SMPC", b"SMPD", b"smpc", b"\0\0\0\0", b"\xff\xff\xff\xff", b"CPMS"),
    VERSION_F: (0, 1, 2, 127, 128, 255),
    KIND_F: (0, 1, 2, 3, 4, 5, 127, 128, 255),
    DTYPE_F: (*range(len(WIRE_DTYPES) + 2), 127, 128, 255),
    NDIM_F: (*range(MAX_NDIM + 3), 127, 128, 255),
    SESSION_F: (SESSION, OTHER_SESSION, b"\0" * 16, b"\xff" * 16, SESSION[::-1]),
    SENDER_F: (0, 1, 2, 3, 0x7FFF, 0x8000, 0xFFFF),
    SEQ_F: _U64_EDGES,
    TAG_F: _U64_EDGES,
    LENGTH_F: _U64_EDGES,
    **{index: _U64_EDGES for index in SHAPE_F},
}
_FIELD_WEIGHTS = {MAGIC_F: 1, VERSION_F: 1, KIND_F: 2, DTYPE_F: 4, NDIM_F: 4, SESSION_F: 2, SENDER_F: 1, SEQ_F: 2,
                  TAG_F: 1, LENGTH_F: 5, **{index: 2 for index in SHAPE_F}}
_SHAPES = ((), (0,), (1,), (3,), (17,), (2, 3), (3, 0), (0, 4), (1, 2, 1, 2), (2,) * 8, (1,) * 7 + (5,))
_BUFFER_KINDS = ("bytes", "bytearray", "memoryview", "uint8 array", "wide array", "2-D array", "zmq frame",
                 "strided")


# ------------------------------------------------------------------------------------------- the oracle


def receive(header: Any, chunks: list[Any], *, session_id: bytes | None, max_bytes: int,
            budget: int = BUDGET) -> np.ndarray | None:
    """What a receiver makes of ``header`` with ``chunks[0]`` as its payload, followed by one MORE frame (header
    made here, valid) per further chunk: the array of the message they complete, None if it is incomplete, or
    ProtocolError.  A message without a payload part is refused, as the transport does before decoding it."""
    if not chunks:
        raise ProtocolError("message with 1 part(s)")
    head = decode_header(header, session_id=session_id, max_bytes=max_bytes)
    if head.kind not in (Kind.DATA, Kind.MORE):
        if len(chunks) > 1:
            raise ProtocolError("continuation after a control frame")
        return whole_frame(head, chunks[0]).array
    mailbox = Mailbox(receiver="party 0", budget=budget)
    array = None
    for index, chunk in enumerate(chunks):
        if index:
            part = np.empty(memoryview(chunk).nbytes, dtype=np.uint8)  # only its length goes into the header
            head = decode_header(encode_header(Kind.MORE, session_id=head.session_id, sender=1, seq=0, tag=head.tag,
                                               array=part), session_id=session_id, max_bytes=max_bytes)
        array = mailbox.store(1, "party 1", head, mailbox.check(1, "party 1", head, chunk))
    return array


def _decode_or_refuse(header: Any, chunks: list[Any], *, session_id: bytes | None, max_bytes: int) -> np.ndarray | None:
    """The array ``header`` and ``chunks`` carry, checked against its header, or None if refused (ProtocolError)
    or incomplete.

    Any other exception propagates: that is the bug this file hunts.
    """
    try:
        array = receive(header, chunks, session_id=session_id, max_bytes=max_bytes)
    except ProtocolError:
        return None
    if array is None:
        return None
    fields = struct.unpack(HEADER_FORMAT, bytes(memoryview(header).cast("B")))
    canonical = encode_header(Kind(fields[KIND_F]), session_id=fields[SESSION_F], sender=fields[SENDER_F],
                              seq=fields[SEQ_F], tag=fields[TAG_F], array=array)
    assert canonical == bytes(memoryview(header).cast("B")), "an accepted header is not the canonical one"
    assert array.tobytes() == b"".join(bytes(memoryview(chunk).cast("B")) for chunk in chunks)
    assert array.dtype in WIRE_DTYPES and array.ndim <= MAX_NDIM
    assert array.nbytes <= max_bytes
    assert session_id is None or fields[SESSION_F] == session_id
    return array


def _as_buffer(kind: str, data: bytes) -> Any:
    """``data`` carried by a buffer of type ``kind``; "strided" is not contiguous (must be refused if > 1 byte)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "uint8 array":
        return raw.copy()
    if kind == "wide array":
        return raw.view("<u4") if raw.size % 4 == 0 else raw
    if kind == "2-D array":
        return raw.reshape(-1, 2) if raw.size % 2 == 0 else raw
    if kind == "zmq frame":
        return zmq.Frame(data)
    return np.repeat(raw, 2)[::2]


# ---------------------------------------------------------------------------------------- valid frames


def _valid_frame(rng: random.Random) -> tuple[bytes, bytes]:
    """Header and payload of a random valid frame (any kind, dtype, shape of up to 8 dimensions)."""
    dtype = rng.choice(WIRE_DTYPES)
    shape = rng.choice(_SHAPES)
    array = (np.arange(int(np.prod(shape)), dtype=np.int64) % 251).astype(dtype).reshape(shape)
    header = encode_header(rng.choice(list(Kind)), session_id=SESSION, sender=rng.choice((0, 1, 2, 0xFFFF)),
                           seq=rng.choice(_U64_EDGES), tag=rng.choice(_U64_EDGES), array=array)
    return header, array.tobytes()


def _random_bytes(rng: random.Random, count: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(count))


# ----------------------------------------------------------------------------------------- mutations
# Each takes a valid (header, payload) and returns (header, chunks) to decode.


def _bit_flips(rng: random.Random, header: bytes, payload: bytes) -> tuple[Any, list[Any]]:
    """1 to 8 bit flips, three quarters of them in the header."""
    data = bytearray(header + payload)
    for _ in range(rng.randint(1, 8)):
        in_header = not payload or rng.random() < 0.75
        position = rng.randrange(HEADER_SIZE) if in_header else HEADER_SIZE + rng.randrange(len(payload))
        data[position] ^= 1 << rng.randrange(8)
    return bytes(data[:HEADER_SIZE]), [bytes(data[HEADER_SIZE:])]


def _truncations(rng: random.Random, header: bytes, payload: bytes) -> tuple[Any, list[Any]]:
    """The header, the payload or both cut short, from either end."""
    choice = rng.randrange(5)
    if choice == 0:
        return header[: rng.randrange(HEADER_SIZE)], [payload]
    if choice == 1:
        return header[rng.randint(1, HEADER_SIZE) :], [payload]
    if choice == 2 and payload:
        return header, [payload[: rng.randrange(len(payload))]]
    if choice == 3 and payload:
        return header, [payload[rng.randint(1, len(payload)) :]]
    return header[: rng.randrange(HEADER_SIZE)], [payload[: rng.randint(0, len(payload))]]


def _extensions(rng: random.Random, header: bytes, payload: bytes) -> tuple[Any, list[Any]]:
    """Bytes added to the header or the payload: a few, one element's worth, a whole header, a copy."""
    choice = rng.randrange(5)
    if choice == 0:
        return header + _random_bytes(rng, rng.randint(1, 64)), [payload]
    if choice == 1:
        return header + header, [payload]
    if choice == 2:
        return header, [payload + _random_bytes(rng, rng.choice((1, 2, 4, 8, 16, 200)))]
    if choice == 3:
        return header, [payload + payload + b"\0"]
    return _random_bytes(rng, rng.randint(0, 8)) + header, [payload]


def _field_overwrites(rng: random.Random, header: bytes, payload: bytes) -> tuple[Any, list[Any]]:
    """1 to 3 fields set to extreme values; sometimes the length is then made to agree with the new shape and
    dtype (wrapped to 64 bits, as a C decoder would compute it) and the payload resized to match."""
    fields = list(struct.unpack(HEADER_FORMAT, header))
    indices = list(_FIELD_WEIGHTS)
    for index in rng.choices(indices, weights=[_FIELD_WEIGHTS[i] for i in indices], k=rng.randint(1, 3)):
        fields[index] = rng.choice(EXTREMES[index])
    if rng.random() < 0.3 and fields[NDIM_F] <= MAX_NDIM:
        fields[10 + fields[NDIM_F] :] = [0] * (MAX_NDIM - fields[NDIM_F])
    if rng.random() < 0.5 and fields[DTYPE_F] < len(WIRE_DTYPES) and fields[NDIM_F] <= MAX_NDIM:
        elements = 1
        for dim in fields[10 : 10 + fields[NDIM_F]]:
            elements *= dim
        fields[LENGTH_F] = (elements * WIRE_DTYPES[fields[DTYPE_F]].itemsize) & _U64_MAX
        if fields[LENGTH_F] <= 4096 and rng.random() < 0.7:
            payload = _random_bytes(rng, fields[LENGTH_F])
    return struct.pack(HEADER_FORMAT, *fields), [payload]


def _chunking(rng: random.Random, header: bytes, payload: bytes) -> tuple[Any, list[Any]]:
    """The payload cut at random points (empty chunks too, occasionally none or hundreds) into buffers of random
    types, the first for the header's frame and each further one for a continuation; sometimes with a field
    overwritten as well."""
    if rng.random() < 0.3:
        header, (payload,) = _field_overwrites(rng, header, payload)
    count = rng.choice((1, 1, 2, 3, 5, 8, 0, 300))
    cuts = sorted(rng.randint(0, len(payload)) for _ in range(max(count - 1, 0)))
    pieces = [payload[start:end] for start, end in zip([0, *cuts], [*cuts, len(payload)])] if count else []
    return (_as_buffer(rng.choice(_BUFFER_KINDS), header),
            [_as_buffer(rng.choice(_BUFFER_KINDS), piece) for piece in pieces])


FAMILIES: dict[str, Callable[[random.Random, bytes, bytes], tuple[Any, list[Any]]]] = {
    "bit flips": _bit_flips,
    "truncations": _truncations,
    "extensions": _extensions,
    "field overwrites": _field_overwrites,
    "chunking": _chunking,
}
assert len(FAMILIES) * FRAMES_PER_FAMILY >= 20_000


def _cap(rng: random.Random, payload_bytes: int) -> int:
    """The receiver's size cap: the default mostly, else an edge (below, at or far above the payload)."""
    if rng.random() < 0.8:
        return MAX_BYTES
    return max(0, rng.choice((0, 1, payload_bytes - 1, payload_bytes, payload_bytes + 1, 1 << 40, 1 << 64)))


@pytest.mark.parametrize("family", FAMILIES)
def test_mutated_frames_decode_canonically_or_are_protocol_errors(family: str) -> None:
    rng = random.Random(f"{SEED}/{family}")
    mutate = FAMILIES[family]
    outcomes: Counter[str] = Counter()
    for case in range(FRAMES_PER_FAMILY):
        header, payload = _valid_frame(rng)
        session_id = SESSION if rng.random() < 0.7 else None
        max_bytes = _cap(rng, len(payload))
        mutated, chunks = mutate(rng, header, payload)
        try:
            frame = _decode_or_refuse(mutated, chunks, session_id=session_id, max_bytes=max_bytes)
        except Exception as error:
            raise AssertionError(
                f"{family} case {case}: {type(error).__name__}: {error}; header={bytes(memoryview(mutated))!r} "
                f"chunk sizes={[memoryview(chunk).nbytes for chunk in chunks]} max_bytes={max_bytes} "
                f"session_id={session_id!r}"
            ) from error
        outcomes["decoded" if frame is not None else "refused"] += 1
    assert sum(outcomes.values()) == FRAMES_PER_FAMILY
    # Both outcomes must be common, or the generator has stopped reaching one side of the decoder.
    assert outcomes["refused"] >= FRAMES_PER_FAMILY // 10, outcomes
    if family in ("bit flips", "field overwrites", "chunking"):
        assert outcomes["decoded"] >= FRAMES_PER_FAMILY // 100, outcomes


# ------------------------------------------------------------------------------------------ hypothesis


@st.composite
def _hostile_frames(draw: st.DrawFn) -> tuple[Any, list[Any], bytes | None, int]:
    """A valid frame, then hypothesis-chosen field overwrites, payload resizing, chunk cuts and buffer types."""
    dtype = draw(st.sampled_from(WIRE_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=MAX_NDIM)))
    array = np.frombuffer(draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize,
                                         max_size=int(np.prod(shape)) * dtype.itemsize)), dtype=dtype).reshape(shape)
    header = encode_header(draw(st.sampled_from(Kind)), session_id=SESSION, sender=draw(st.integers(0, 0xFFFF)),
                           seq=draw(st.sampled_from(_U64_EDGES)), tag=draw(st.integers(0, _U64_MAX)), array=array)
    fields = list(struct.unpack(HEADER_FORMAT, header))
    for index in draw(st.lists(st.sampled_from(sorted(EXTREMES)), max_size=4)):
        fields[index] = draw(st.sampled_from(EXTREMES[index]))
    payload = array.tobytes()
    payload = draw(st.sampled_from((payload, payload[:-1], payload + b"\0", b"")))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=6)))
    pieces = [payload[start:end] for start, end in zip([0, *cuts], [*cuts, len(payload)])]
    kinds = st.sampled_from(_BUFFER_KINDS)
    return (_as_buffer(draw(kinds), struct.pack(HEADER_FORMAT, *fields)),
            [_as_buffer(draw(kinds), piece) for piece in pieces],
            draw(st.sampled_from((SESSION, None))),
            draw(st.sampled_from((MAX_BYTES, 0, len(payload), max(len(payload) - 1, 0), 1 << 64))))


@settings(max_examples=max(500, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=_hostile_frames())
def test_hypothesis_frames_decode_canonically_or_are_protocol_errors(case: tuple) -> None:
    header, chunks, session_id, max_bytes = case
    _decode_or_refuse(header, chunks, session_id=session_id, max_bytes=max_bytes)


# ------------------------------------------------------------------------------------ regression inputs


def _strided(data: bytes) -> np.ndarray:
    """A 1-D uint8 view of ``data`` that is not contiguous (format "B", ndim 1, stride 2)."""
    return np.repeat(np.frombuffer(data, dtype=np.uint8), 2)[::2]


def test_strided_byte_buffers_are_protocol_errors() -> None:
    """Found by this fuzzer: a strided 1-D byte buffer passed the format check and raised BufferError."""
    array = np.arange(3, dtype="<i8")
    header = encode_header(Kind.DATA, session_id=SESSION, sender=1, seq=1, tag=1, array=array)
    with pytest.raises(ProtocolError, match="header is not a contiguous byte buffer"):
        decode_frame(_strided(header), array.tobytes(), session_id=SESSION, max_bytes=MAX_BYTES)
    with pytest.raises(ProtocolError, match="payload is not a contiguous byte buffer"):
        decode_frame(header, _strided(array.tobytes()), session_id=SESSION, max_bytes=MAX_BYTES)
    with pytest.raises(ProtocolError, match="payload is not a contiguous byte buffer"):
        receive(header, [array.tobytes()[:8], _strided(array.tobytes()[8:])], session_id=SESSION, max_bytes=MAX_BYTES)


# ------------------------------------------------------------------------------------- no huge allocation

ACTUAL_BYTES = 64 << 10
_SLACK = 64 << 10


def _claiming(declared: int, shape: tuple[int, ...], dtype_code: int = 0) -> bytes:
    """A DATA header declaring ``declared`` bytes and ``shape`` of dtype ``WIRE_DTYPES[dtype_code]``."""
    fields = list(struct.unpack(HEADER_FORMAT, encode_header(
        Kind.DATA, session_id=SESSION, sender=1, seq=1, tag=1, array=np.zeros(1, dtype="<i8"))))
    fields[DTYPE_F], fields[NDIM_F], fields[LENGTH_F] = dtype_code, len(shape), declared
    fields[10:] = [*shape, *[0] * (MAX_NDIM - len(shape))]
    return struct.pack(HEADER_FORMAT, *fields)


def _peak_bytes(action: Callable[[], Any]) -> tuple[int, Any]:
    """Peak traced allocation (numpy's included) while ``action`` runs, and what it returned or raised."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            outcome: Any = action()
        except ProtocolError as error:
            outcome = error
        return tracemalloc.get_traced_memory()[1] - before, outcome
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("header", "max_bytes", "message"),
    [
        (_claiming(256 << 20, (32 << 20,)), 1 << 30, "would have 268436480 bytes waiting here with tag 1, more than "
                                                     "max_buffered_bytes=16777216"),
        (_claiming(1 << 63, (1 << 60,)), _U64_MAX, "would have 9223372036854776832 bytes waiting here"),
        (_claiming(_U64_MAX, (_U64_MAX,), 3), 1 << 64, "would have 18446744073709552639 bytes waiting here"),
        (_claiming(0, (1 << 32, 1 << 32)), 1 << 40, "needs 147573952589676412928 bytes but the frame declares 0"),
        (_claiming(1 << 36, (1 << 33,)), MAX_BYTES, "more than the cap"),
        (_claiming(ACTUAL_BYTES, (1 << 40, 1 << 40, 0)), 1 << 50, "needs 0 bytes but the frame declares 65536"),
    ],
    ids=["256MiB-over-budget", "2^63-over-budget", "u64-max", "wrapped-product", "over-cap", "zero-dim-huge-dims"],
)
def test_a_frame_claiming_a_huge_size_is_refused_without_allocating_it(header: bytes, max_bytes: int,
                                                                       message: str) -> None:
    """64 KiB really sent, as a first frame and 15 continuations; the header claims far more than the cap, the
    budget or its own shape allows.  Holding what was sent may allocate; nothing may allocate what was claimed."""
    chunks = [bytes([index]) * (ACTUAL_BYTES // 16) for index in range(16)]
    peak, outcome = _peak_bytes(lambda: receive(header, chunks, session_id=SESSION, max_bytes=max_bytes))
    assert isinstance(outcome, ProtocolError) and message in str(outcome), outcome
    assert peak < 2 * ACTUAL_BYTES + _SLACK, f"peak {peak} bytes while refusing a frame of {ACTUAL_BYTES} bytes"


def test_a_large_message_is_allocated_once_when_its_first_frame_passes_and_a_whole_frame_is_a_view() -> None:
    chunks = [b"\1" * (ACTUAL_BYTES // 16)] * 16
    header = _claiming(ACTUAL_BYTES, (ACTUAL_BYTES // 8,))
    # The first frame alone: the whole array is allocated then (and charged to the budget), nothing more.
    mailbox = Mailbox(receiver="party 0", budget=BUDGET)
    head = decode_header(header, session_id=SESSION, max_bytes=MAX_BYTES)
    peak, outcome = _peak_bytes(lambda: mailbox.store(1, "party 1", head, mailbox.check(1, "party 1", head, chunks[0])))
    assert outcome is None and ACTUAL_BYTES <= peak < ACTUAL_BYTES + _SLACK
    assert mailbox.held(1) == ACTUAL_BYTES + MESSAGE_CHARGE_BYTES
    # The whole message: one buffer, filled in place (no joining copy); tracemalloc does see it.
    peak, array = _peak_bytes(lambda: receive(header, chunks, session_id=SESSION, max_bytes=MAX_BYTES))
    assert isinstance(array, np.ndarray) and array.shape == (ACTUAL_BYTES // 8,)
    assert ACTUAL_BYTES <= peak < ACTUAL_BYTES + _SLACK
    # A message in one frame is a view of the frame's payload, not a copy.
    single = bytes(ACTUAL_BYTES)
    peak, frame = _peak_bytes(lambda: decode_frame(header, single, session_id=SESSION, max_bytes=MAX_BYTES))
    assert not isinstance(frame, ProtocolError) and frame.array.shape == (ACTUAL_BYTES // 8,) and peak < _SLACK
