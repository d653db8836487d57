"""Frames for tests of the wire format: what a receiver makes of a message, one checker of what it accepted,
and generators of valid and hostile frames.

``receive`` takes a message through the receiver's real path: ``decode_header``, then ``whole_frame`` for
control frames or the ``Mailbox`` (which assembles continuations) for data.  ``decode_or_refuse`` is the one
check of an outcome: a message is refused (ProtocolError), incomplete, or exactly what its header says --
``encode_header`` of the decoded array gives back the header byte for byte, and the array holds the payload's
bytes.  Any other exception propagates: that is the bug the fuzz tests hunt.  A mutation may produce a valid
message (a payload bit flip, a shape rewritten together with its length); that is fine as long as it passes
this check.

The mutation ``FAMILIES`` take a valid (header, payload) and return (header, payload chunks), drawn from a
``random.Random`` (seeded by the tests with ``SEED``, so the cases do not depend on the hypothesis profile).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from network.base import WIRE_DTYPES
from network.delivery import Mailbox
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

#: The session of the frames made here, another one, and the receiver's default size cap.
SESSION = bytes(range(16))
OTHER_SESSION = b"another-session!"
MAX_BYTES = 1 << 20
#: The receiving mailbox's per-peer budget in the fuzz runs: larger than any payload generated, far below the
#: largest caps tried, so a header claiming more than it is refused before its buffer is allocated.
BUDGET = 16 << 20
#: Seed of the generators that draw hostile frames.
SEED = 20240611
U64_MAX = (1 << 64) - 1

# Field indices of HEADER_FORMAT.
MAGIC_F, VERSION_F, KIND_F, DTYPE_F, NDIM_F, SESSION_F, SENDER_F, SEQ_F, TAG_F, LENGTH_F = range(10)
SHAPE_F = tuple(range(10, 10 + MAX_NDIM))

U64_EDGES = (
    0, 1, 2, 3, 7, 8, 9, 255, 256, MAX_BYTES // 8, MAX_BYTES - 1, MAX_BYTES, MAX_BYTES + 1, (1 << 31) - 1,
    1 << 31, (1 << 32) - 1, 1 << 32, (1 << 32) + 1, 1 << 53, 1 << 61, 1 << 62, (1 << 63) - 1, 1 << 63,
    (1 << 63) + 1, U64_MAX - 7, U64_MAX - 1, U64_MAX,
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
    SEQ_F: U64_EDGES,
    TAG_F: U64_EDGES,
    LENGTH_F: U64_EDGES,
    **{index: U64_EDGES for index in SHAPE_F},
}
_FIELD_WEIGHTS = {MAGIC_F: 1, VERSION_F: 1, KIND_F: 2, DTYPE_F: 4, NDIM_F: 4, SESSION_F: 2, SENDER_F: 1, SEQ_F: 2,
                  TAG_F: 1, LENGTH_F: 5, **{index: 2 for index in SHAPE_F}}
_SHAPES = ((), (0,), (1,), (3,), (17,), (2, 3), (3, 0), (0, 4), (1, 2, 1, 2), (2,) * 8, (1,) * 7 + (5,))
#: Buffer types a header or payload chunk may come in (see ``as_buffer``).
BUFFER_KINDS = ("bytes", "bytearray", "memoryview", "uint8 array", "wide array", "2-D array", "zmq frame",
                "strided")


# ----------------------------------------------------------------------------------- the receiver's path


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


def decode_whole(header: Any, chunks: list[Any], *, session_id: bytes | None, max_bytes: int) -> np.ndarray:
    """``decode_frame`` of a message of one part: the header and its whole payload."""
    (payload,) = chunks
    return decode_frame(header, payload, session_id=session_id, max_bytes=max_bytes).array


Decoder = Callable[..., "np.ndarray | None"]


def decode_or_refuse(header: Any, chunks: list[Any], *, session_id: bytes | None, max_bytes: int,
                     decode: Decoder = receive) -> np.ndarray | None:
    """The array ``header`` and ``chunks`` carry, checked against its header, or None if refused (ProtocolError)
    or incomplete.  ``decode`` is the receiver's path (``receive``) or ``decode_whole`` for one frame alone.

    Any other exception propagates: that is the bug the fuzz tests hunt.
    """
    try:
        array = decode(header, chunks, session_id=session_id, max_bytes=max_bytes)
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


def as_buffer(kind: str, data: bytes) -> Any:
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


def valid_frame(rng: random.Random) -> tuple[bytes, bytes]:
    """Header and payload of a random valid frame (any kind, dtype, shape of up to 8 dimensions)."""
    dtype = rng.choice(WIRE_DTYPES)
    shape = rng.choice(_SHAPES)
    array = (np.arange(int(np.prod(shape)), dtype=np.int64) % 251).astype(dtype).reshape(shape)
    header = encode_header(rng.choice(list(Kind)), session_id=SESSION, sender=rng.choice((0, 1, 2, 0xFFFF)),
                           seq=rng.choice(U64_EDGES), tag=rng.choice(U64_EDGES), array=array)
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
        fields[LENGTH_F] = (elements * WIRE_DTYPES[fields[DTYPE_F]].itemsize) & U64_MAX
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
    return (as_buffer(rng.choice(BUFFER_KINDS), header),
            [as_buffer(rng.choice(BUFFER_KINDS), piece) for piece in pieces])


FAMILIES: dict[str, Callable[[random.Random, bytes, bytes], tuple[Any, list[Any]]]] = {
    "bit flips": _bit_flips,
    "truncations": _truncations,
    "extensions": _extensions,
    "field overwrites": _field_overwrites,
    "chunking": _chunking,
}
