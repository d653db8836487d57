"""Frame decoder under volume: 25,000 hostile messages per run, each one decodes to a canonical frame or is a
ProtocolError, and a frame that claims a huge size is refused before anything of that size is allocated.

``test_framing.py`` checks each field's own refusal and fuzzes raw header bytes.  This file adds volume (a
seeded generator, so the count does not depend on the hypothesis profile) and what else a peer or a caller can
vary: how the payload is cut into a first frame and continuations, which buffer type carries it, the size cap,
the per-peer budget and the session check.  The mutation families, the receiver's path (``receive``) and the
check of what it accepted (``decode_or_refuse``: exactly what its header says, or refused) are in
``tests.support.frames``.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from network.base import WIRE_DTYPES
from network.delivery import MESSAGE_CHARGE_BYTES, Mailbox
from network.errors import ProtocolError
from network.framing import (
    HEADER_FORMAT,
    MAX_NDIM,
    Kind,
    decode_frame,
    decode_header,
    encode_header,
)
from tests.support.frames import (
    BUDGET,
    BUFFER_KINDS,
    DTYPE_F,
    EXTREMES,
    FAMILIES,
    LENGTH_F,
    MAX_BYTES,
    NDIM_F,
    SEED,
    SESSION,
    U64_EDGES,
    U64_MAX,
    as_buffer,
    decode_or_refuse,
    receive,
    valid_frame,
)

FRAMES_PER_FAMILY = 5_000
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
        header, payload = valid_frame(rng)
        session_id = SESSION if rng.random() < 0.7 else None
        max_bytes = _cap(rng, len(payload))
        mutated, chunks = mutate(rng, header, payload)
        try:
            frame = decode_or_refuse(mutated, chunks, session_id=session_id, max_bytes=max_bytes)
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
                           seq=draw(st.sampled_from(U64_EDGES)), tag=draw(st.integers(0, U64_MAX)), array=array)
    fields = list(struct.unpack(HEADER_FORMAT, header))
    for index in draw(st.lists(st.sampled_from(sorted(EXTREMES)), max_size=4)):
        fields[index] = draw(st.sampled_from(EXTREMES[index]))
    payload = array.tobytes()
    payload = draw(st.sampled_from((payload, payload[:-1], payload + b"\0", b"")))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=6)))
    pieces = [payload[start:end] for start, end in zip([0, *cuts], [*cuts, len(payload)])]
    kinds = st.sampled_from(BUFFER_KINDS)
    return (as_buffer(draw(kinds), struct.pack(HEADER_FORMAT, *fields)),
            [as_buffer(draw(kinds), piece) for piece in pieces],
            draw(st.sampled_from((SESSION, None))),
            draw(st.sampled_from((MAX_BYTES, 0, len(payload), max(len(payload) - 1, 0), 1 << 64))))


@settings(max_examples=max(500, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=_hostile_frames())
def test_hypothesis_frames_decode_canonically_or_are_protocol_errors(case: tuple) -> None:
    header, chunks, session_id, max_bytes = case
    decode_or_refuse(header, chunks, session_id=session_id, max_bytes=max_bytes)


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
        (_claiming(1 << 63, (1 << 60,)), U64_MAX, "would have 9223372036854776832 bytes waiting here"),
        (_claiming(U64_MAX, (U64_MAX,), 3), 1 << 64, "would have 18446744073709552639 bytes waiting here"),
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
