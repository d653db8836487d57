"""The wire format: every valid frame round-trips, every defect is a ProtocolError and nothing else."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from network.base import WIRE_DTYPES
from network.errors import ProtocolError
from network.framing import (
    CHUNK_BYTES,
    HEADER_FORMAT,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    Kind,
    decode_frame,
    decode_header,
    encode_header,
    json_payload,
    payload_chunks,
)
from tests.support.frames import MAX_BYTES, SESSION, decode_or_refuse, decode_whole


def _frame_bytes(array: np.ndarray, *, kind: Kind = Kind.DATA, seq: int = 3, tag: int = 7) -> tuple[bytes, bytes]:
    """Header and payload of a valid frame carrying ``array``."""
    header = encode_header(kind, session_id=SESSION, sender=2, seq=seq, tag=tag, array=array)
    return header, array.tobytes()


def _fields(array: np.ndarray) -> list:
    """The unpacked header fields of a valid frame, to be tampered with."""
    return list(struct.unpack(HEADER_FORMAT, _frame_bytes(array)[0]))


def _decode(header: bytes, payload: bytes, max_bytes: int = MAX_BYTES):
    return decode_frame(header, payload, session_id=SESSION, max_bytes=max_bytes)


def _shape(ndim: int) -> tuple[int, ...]:
    return tuple((2, 3, 1)[axis % 3] for axis in range(ndim))


@pytest.mark.parametrize("dtype", WIRE_DTYPES, ids=str)
@pytest.mark.parametrize("ndim", range(9))
def test_round_trip_every_dtype_and_ndim(dtype: np.dtype, ndim: int) -> None:
    array = (np.arange(int(np.prod(_shape(ndim))), dtype=np.int64) - 3).astype(dtype).reshape(_shape(ndim))
    frame = _decode(*_frame_bytes(array, seq=11, tag=(1 << 64) - 1))
    assert (frame.kind, frame.sender, frame.seq, frame.session_id) == (Kind.DATA, 2, 11, SESSION)
    assert frame.tag == (1 << 64) - 1
    assert frame.array.dtype == dtype and frame.array.shape == array.shape
    np.testing.assert_array_equal(frame.array, array)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 0, 5)])
def test_empty_arrays_round_trip(shape: tuple[int, ...]) -> None:
    array = np.zeros(shape, dtype="<i8")
    assert _decode(*_frame_bytes(array)).array.shape == shape


def test_json_control_payload_round_trips() -> None:
    body = {"rank": 1, "handshake": {"frac_bits": 16}}
    frame = _decode(*_frame_bytes(json_payload(body), kind=Kind.HELLO, seq=0))
    assert frame.kind == Kind.HELLO and frame.json() == body


def test_malformed_json_body_is_a_protocol_error() -> None:
    frame = _decode(*_frame_bytes(np.frombuffer(b"\xff{", dtype=np.uint8), kind=Kind.BYE))
    with pytest.raises(ProtocolError, match="malformed JSON"):
        frame.json()


def _tampered(*changes: tuple[int, object]) -> tuple[bytes, bytes]:
    """A frame of two int64 whose header fields ``(index, value)`` were overwritten."""
    array = np.arange(2, dtype="<i8")
    fields = _fields(array)
    for index, value in changes:
        fields[index] = value
    return struct.pack(HEADER_FORMAT, *fields), array.tobytes()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([(0, b"SMPD")], "magic"),
        ([(1, PROTOCOL_VERSION + 1)], f"protocol version {PROTOCOL_VERSION + 1}, we speak {PROTOCOL_VERSION}"),
        ([(1, PROTOCOL_VERSION - 1)], f"protocol version {PROTOCOL_VERSION - 1}, we speak {PROTOCOL_VERSION}"),
        ([(2, 5)], "unknown frame kind 5"),
        ([(2, int(Kind.MORE))], "a MORE frame carries bytes"),
        ([(3, len(WIRE_DTYPES))], "unknown dtype code"),
        ([(4, 9)], "9 dimensions"),
        ([(4, 0)], "unused shape entries"),
        ([(5, b"x" * 16)], "frame for another session"),
        ([(9, 800), (10, 100)], "declared 800 bytes but payload has 16"),
        ([(9, 800)], "needs 16 bytes but the frame declares 800"),
        ([(10, 3)], "needs 24 bytes but the frame declares 16"),
        ([(11, 1)], "unused shape entries"),
        ([(17, 5)], "unused shape entries"),
    ],
)
def test_each_malformed_field_is_rejected(changes: list[tuple[int, object]], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        _decode(*_tampered(*changes))


def test_version_is_checked_before_the_rest_of_the_header() -> None:
    header = MAGIC + bytes([PROTOCOL_VERSION + 1]) + b"\x00" * 3  # far too short, but the version speaks first
    with pytest.raises(ProtocolError, match=f"protocol version {PROTOCOL_VERSION + 1}, we speak {PROTOCOL_VERSION}"):
        _decode(header, b"")


_VALID_HEADER = _frame_bytes(np.zeros(1))[0]


@pytest.mark.parametrize("header", [b"", b"SMP", b"SMPC", _VALID_HEADER[:-1], _VALID_HEADER + b"\0"])
def test_wrong_header_length_is_rejected(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        _decode(header, b"\0" * 8)


def test_declared_length_over_the_cap_is_rejected_before_anything_is_allocated() -> None:
    array = np.zeros(1000, dtype="<f8")
    with pytest.raises(ProtocolError, match="more than the cap"):
        _decode(*_frame_bytes(array), max_bytes=7999)


def test_huge_shape_is_rejected_without_allocation() -> None:
    fields = _fields(np.zeros((1, 1), dtype="<i8"))
    fields[10:12] = [(1 << 64) - 1, 0]
    fields[9] = 0
    with pytest.raises(ProtocolError):
        _decode(struct.pack(HEADER_FORMAT, *fields), b"")


@pytest.mark.parametrize("header", [None, 5, "SMPC", object()])
def test_non_buffers_are_rejected(header: object) -> None:
    with pytest.raises(ProtocolError):
        _decode(header, b"")  # type: ignore[arg-type]


def test_session_check_can_be_deferred_to_the_handshake() -> None:
    header, payload = _tampered((5, b"y" * 16))
    frame = decode_frame(header, payload, session_id=None, max_bytes=MAX_BYTES)
    assert frame.session_id == b"y" * 16


def test_encode_header_refuses_fields_that_do_not_fit() -> None:
    array = np.zeros(1, dtype="<i8")
    with pytest.raises(ValueError, match="tag"):
        encode_header(Kind.DATA, session_id=SESSION, sender=0, seq=0, tag=1 << 64, array=array)
    with pytest.raises(ValueError, match="sender"):
        encode_header(Kind.DATA, session_id=SESSION, sender=1 << 16, seq=0, tag=0, array=array)
    with pytest.raises(ValueError, match="session id"):
        encode_header(Kind.DATA, session_id=b"short", sender=0, seq=0, tag=0, array=array)
    with pytest.raises(ValueError, match="wire dtype"):
        encode_header(Kind.DATA, session_id=SESSION, sender=0, seq=0, tag=0, array=np.zeros(1, dtype=np.float32))


def test_large_arrays_are_cut_into_chunks_and_a_first_frame_alone_is_not_a_whole_frame() -> None:
    array = np.arange(CHUNK_BYTES // 8 * 2 + 3, dtype="<i8")
    chunks = payload_chunks(array)
    assert [chunk.nbytes for chunk in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 24]
    assert b"".join(bytes(chunk) for chunk in chunks) == array.tobytes()
    assert [chunk.nbytes for chunk in payload_chunks(np.zeros(0, dtype=np.uint8))] == [0]
    header = encode_header(Kind.DATA, session_id=SESSION, sender=2, seq=3, tag=7, array=array)
    head = decode_header(header, session_id=SESSION, max_bytes=array.nbytes)
    assert (head.kind, head.length, head.shape, head.dtype) == (Kind.DATA, array.nbytes, array.shape, array.dtype)
    with pytest.raises(ProtocolError, match=f"declared {array.nbytes} bytes but payload has {CHUNK_BYTES}"):
        decode_frame(header, chunks[0], session_id=SESSION, max_bytes=array.nbytes)
    with pytest.raises(ProtocolError, match="more than the cap"):
        decode_header(header, session_id=SESSION, max_bytes=array.nbytes - 1)


def test_a_continuation_header_declares_bytes_only() -> None:
    chunk = np.arange(5, dtype=np.uint8)
    more = decode_frame(*_frame_bytes(chunk, kind=Kind.MORE), session_id=SESSION, max_bytes=MAX_BYTES)
    assert more.kind == Kind.MORE and more.array.tolist() == [0, 1, 2, 3, 4]
    for array in (np.arange(5, dtype="<i8"), chunk.reshape(1, 5), np.array(3, dtype=np.uint8)):
        with pytest.raises(ProtocolError, match="a MORE frame carries bytes"):
            decode_frame(*_frame_bytes(array, kind=Kind.MORE), session_id=SESSION, max_bytes=MAX_BYTES)


def _check_decodes_or_protocol_error(header: bytes, payload: bytes, max_bytes: int) -> None:
    decode_or_refuse(header, [payload], session_id=SESSION, max_bytes=max_bytes, decode=decode_whole)


_FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(header=st.binary(max_size=2 * HEADER_SIZE), payload=st.binary(max_size=64), max_bytes=st.integers(0, 1 << 40))
def test_random_bytes_only_ever_give_protocol_error(header: bytes, payload: bytes, max_bytes: int) -> None:
    _check_decodes_or_protocol_error(MAGIC + bytes([PROTOCOL_VERSION]) + header, payload, max_bytes)


_U64 = st.integers(0, (1 << 64) - 1)


@_FUZZ
@given(
    fields=st.tuples(
        st.sampled_from([MAGIC, b"SMPD"]),
        st.sampled_from([PROTOCOL_VERSION, 0, 2, 255]),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.sampled_from([SESSION, b"\0" * 16]),
        st.integers(0, (1 << 16) - 1),
        _U64,
        _U64,
        st.one_of(st.integers(0, 256), _U64),
        st.lists(st.one_of(st.integers(0, 8), _U64), min_size=8, max_size=8),
    ),
    payload=st.binary(max_size=256),
)
def test_structured_random_headers_only_ever_give_protocol_error(fields: tuple, payload: bytes) -> None:
    header = struct.pack(HEADER_FORMAT, *fields[:10], *fields[10])
    _check_decodes_or_protocol_error(header, payload, MAX_BYTES)


@_FUZZ
@given(
    ndim=st.integers(0, 8),
    dtype_index=st.integers(0, len(WIRE_DTYPES) - 1),
    flips=st.lists(st.tuples(st.integers(0, HEADER_SIZE - 1), st.integers(0, 255)), max_size=4),
    trim=st.integers(-3, 3),
)
def test_mutated_valid_frames_only_ever_give_protocol_error(
    ndim: int, dtype_index: int, flips: list[tuple[int, int]], trim: int
) -> None:
    array = np.ones(_shape(ndim), dtype=WIRE_DTYPES[dtype_index])
    header, payload = _frame_bytes(array)
    mutable = bytearray(header)
    for position, value in flips:
        mutable[position] = value
    payload = payload[: len(payload) + trim] if trim < 0 else payload + b"\0" * trim
    _check_decodes_or_protocol_error(bytes(mutable), payload, MAX_BYTES)
