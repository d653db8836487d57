"""The wire format: a fixed-size little-endian header plus the raw bytes of one array, or of part of it.  No pickle.

Every ZeroMQ message is exactly two parts, ``[header, payload]``, the payload at most ``CHUNK_BYTES``.  An array
larger than that travels as a DATA frame (its header declares the whole array: dtype, shape, total length; its
payload is the first chunk) followed by MORE frames under the same tag, each carrying the next chunk as bytes
(dtype uint8, one dimension); every frame takes the next sequence number.  The receiver allocates the array once,
when the DATA frame passes its checks, and fills it as the MOREs arrive (``network.delivery``).  Chunking is not
cosmetic: libzmq resets its heartbeat timers only when a whole ZeroMQ frame has arrived, so one frame that takes
longer than the heartbeat timeout to cross the wire (1 GiB at 1 Gbit/s) gets the connection dropped.  And two parts
per message keeps what libzmq buffers for us bounded by its queue length in messages (see ``network.zmq_setup``).
The header layout (``HEADER_FORMAT``)::

    magic      4s   b"SMPC"
    version    u8   PROTOCOL_VERSION
    kind       u8   HELLO=0, DATA=1, BYE=2, ABORT=3, MORE=4
    dtype      u8   index into network.base.WIRE_DTYPES
    ndim       u8   <= 8
    session    16s  session id
    sender     u16  node id of the sender
    seq        u64  per directed link, 0 for the HELLO, +1 every frame
    tag        u64  program counter of the operation
    length     u64  payload length in bytes (a DATA frame: of the whole array)
    shape      8 x u64, unused dimensions 0

The payload is the array's C-order little-endian bytes.  HELLO, BYE and ABORT carry UTF-8 JSON as a uint8 array.
``decode_header`` and ``decode_frame`` trust nothing: any input either decodes or raises ``ProtocolError``, and they
never allocate more than the payload they were handed (the array is a view of the payload buffer).
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import WIRE_DTYPES
from .errors import ProtocolError

PROTOCOL_VERSION = 2  # 2: every message is [header, payload]; large arrays continue in MORE frames
MAGIC = b"SMPC"
SESSION_ID_BYTES = 16
MAX_NDIM = 8
HEADER_FORMAT = "<4sBBBB16sHQQQ8Q"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)

#: Largest payload part of one ZeroMQ message (the receiver's MAXMSGSIZE is set just above it).
CHUNK_BYTES = 1 << 20

_HEADER = struct.Struct(HEADER_FORMAT)
_PREFIX = struct.Struct("<4sB")  # magic and version, read before anything else
_U16_MAX = (1 << 16) - 1
_U64_MAX = (1 << 64) - 1
_DTYPE_CODES: dict[np.dtype, int] = {dtype: code for code, dtype in enumerate(WIRE_DTYPES)}
_BYTES = np.dtype("u1")
_ZEROS = tuple((0,) * (MAX_NDIM - ndim) for ndim in range(MAX_NDIM + 1))  # unused shape entries, by ndim


class Kind(enum.IntEnum):
    """What a frame is for."""

    HELLO = 0
    DATA = 1
    BYE = 2
    ABORT = 3
    MORE = 4  # the next chunk of the array whose DATA frame came last from this sender


_KINDS = tuple(Kind(code) for code in range(len(Kind)))  # by code: a tuple lookup, not an enum call per frame


@dataclass(frozen=True)
class Frame:
    """One decoded, validated frame.  ``array`` is a (possibly read-only) view of the payload buffer."""

    kind: Kind
    session_id: bytes
    sender: int
    seq: int
    tag: int
    array: np.ndarray

    def json(self) -> Any:
        """The JSON body of a HELLO, BYE or ABORT frame; ProtocolError if it is not UTF-8 JSON."""
        try:
            return json.loads(self.array.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise ProtocolError(f"{self.kind.name} frame from node {self.sender} has a malformed JSON body") from error


@dataclass(frozen=True)
class Header:
    """One decoded, validated header: what the frame says it is, and the array (or chunk) it declares."""

    kind: Kind
    session_id: bytes
    sender: int
    seq: int
    tag: int
    dtype: np.dtype
    shape: tuple[int, ...]
    length: int


def json_payload(body: Mapping[str, Any]) -> np.ndarray:
    """Encode a control message body as the uint8 array a HELLO, BYE or ABORT frame carries."""
    return np.frombuffer(json.dumps(body, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def payload_chunks(array: np.ndarray) -> list[memoryview]:
    """Views of a C-contiguous array's bytes in parts of at most CHUNK_BYTES (one part, maybe empty, if small).

    The first part is the DATA frame's payload, each further one a MORE frame's.
    """
    flat = memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # numpy arrays are buffers
    if flat.nbytes <= CHUNK_BYTES:
        return [flat]
    return [flat[start : start + CHUNK_BYTES] for start in range(0, flat.nbytes, CHUNK_BYTES)]


def encode_header(
    kind: Kind,
    *,
    session_id: bytes,
    sender: int,
    seq: int,
    tag: int,
    array: np.ndarray | None,
) -> bytes:
    """Pack the header of a frame carrying ``array`` (None for an empty control frame).

    ``array`` must already be a wire array (see ``network.base.check_wire_array``); the payload sent next to this
    header must be its bytes.  Raises ValueError on a field that does not fit the format (a local bug, not a peer's).
    """
    if len(session_id) != SESSION_ID_BYTES:
        raise ValueError(f"session id must be {SESSION_ID_BYTES} bytes, got {len(session_id)}")
    _check_range("sender", sender, _U16_MAX)
    _check_range("sequence number", seq, _U64_MAX)
    _check_range("tag", tag, _U64_MAX)
    if array is None:
        array = np.empty(0, dtype=np.uint8)
    code = _DTYPE_CODES.get(array.dtype)
    if code is None:
        raise ValueError(f"dtype {array.dtype} is not a wire dtype")
    if array.ndim > MAX_NDIM:
        raise ValueError(f"arrays of at most {MAX_NDIM} dimensions can be framed, got {array.ndim}")
    shape = tuple(array.shape) + (0,) * (MAX_NDIM - array.ndim)
    return _HEADER.pack(
        MAGIC, PROTOCOL_VERSION, int(kind), code, array.ndim, bytes(session_id), sender, seq, tag, array.nbytes, *shape
    )


def _check_range(name: str, value: int, maximum: int) -> None:
    """ValueError unless ``value`` is an int in ``[0, maximum]``."""
    if type(value) is int and 0 <= value <= maximum:  # the common case, without the isinstance of numpy's ABCs
        return
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= maximum:
        raise ValueError(f"{name} must be an integer in [0, {maximum}], got {value!r}")


def decode_header(header: Any, *, session_id: bytes | None, max_bytes: int) -> Header:
    """Validate ``header`` (any bytes-like object) and return what it declares; ProtocolError on any defect.

    Checks, in this order: length, magic, version, kind, dtype, ndim, shape, declared length against ``max_bytes``
    and against the shape, a MORE frame's bytes-only form, and the session id (skipped when ``session_id`` is None,
    which the handshake uses to report both sessions itself).  Allocates nothing of the declared size.
    """
    fields = _unpack_header(byte_view(header, "header"))
    kind, dtype, shape, declared = _check_fields(fields, max_bytes)
    if kind == Kind.MORE and (dtype != _BYTES or len(shape) != 1):
        raise ProtocolError(f"a MORE frame carries bytes (uint8, one dimension), this one declares {dtype} {shape}")
    frame_session = fields[5]
    if session_id is not None and frame_session != session_id:
        raise ProtocolError("frame for another session")
    return Header(kind=kind, session_id=frame_session, sender=fields[6], seq=fields[7], tag=fields[8], dtype=dtype,
                  shape=shape, length=declared)


def decode_frame(header: Any, payload: Any, *, session_id: bytes | None, max_bytes: int) -> Frame:
    """Validate ``header`` and ``payload`` (any bytes-like objects) and return the whole frame they carry.

    ``decode_header``'s checks, then the payload must be exactly the declared length (so a DATA frame whose array
    continues in MORE frames is refused here: ``network.delivery`` assembles those).  ProtocolError on any defect.
    """
    return whole_frame(decode_header(header, session_id=session_id, max_bytes=max_bytes), payload)


def whole_frame(head: Header, payload: Any) -> Frame:
    """The frame ``head`` declares, its array a view of ``payload``; ProtocolError unless the lengths agree."""
    body = byte_view(payload, "payload")
    if head.length != body.nbytes:
        raise ProtocolError(f"declared {head.length} bytes but payload has {body.nbytes}")
    return Frame(kind=head.kind, session_id=head.session_id, sender=head.sender, seq=head.seq, tag=head.tag,
                 array=array_view(body, head.dtype, head.shape))


def byte_view(buffer: Any, what: str) -> memoryview:
    """A flat byte view of ``buffer`` without copying; ProtocolError if it is not a contiguous buffer."""
    try:
        view = memoryview(buffer)
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"frame {what} is not a contiguous byte buffer") from error
    # A strided 1-D byte view passes the format test but struct and numpy refuse it later with BufferError.
    if not view.c_contiguous:
        raise ProtocolError(f"frame {what} is not a contiguous byte buffer")
    try:
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"frame {what} is not a contiguous byte buffer") from error


def _unpack_header(head: memoryview) -> tuple[Any, ...]:
    """Unpack a header of the right length, checking magic and then version before any other field."""
    if head.nbytes < _PREFIX.size or bytes(head[:4]) != MAGIC:
        raise ProtocolError("frame does not start with the SMPC magic")
    version = _PREFIX.unpack_from(head)[1]
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version}, we speak {PROTOCOL_VERSION}")
    if head.nbytes != HEADER_SIZE:
        raise ProtocolError(f"header has {head.nbytes} bytes, expected {HEADER_SIZE}")
    return _HEADER.unpack(head)


def _check_fields(fields: tuple[Any, ...], max_bytes: int) -> tuple[Kind, np.dtype, tuple[int, ...], int]:
    """Validate kind, dtype, ndim, shape and declared length; return them decoded."""
    kind_code, dtype_code, ndim, declared = fields[2], fields[3], fields[4], fields[9]
    if kind_code >= len(_KINDS):
        raise ProtocolError(f"unknown frame kind {kind_code}")
    if dtype_code >= len(WIRE_DTYPES):
        raise ProtocolError(f"unknown dtype code {dtype_code}")
    if ndim > MAX_NDIM:
        raise ProtocolError(f"frame declares {ndim} dimensions, at most {MAX_NDIM} allowed")
    shape = fields[10 : 10 + ndim]
    if fields[10 + ndim :] != _ZEROS[ndim]:
        raise ProtocolError(f"frame declares {ndim} dimensions but sets unused shape entries")
    if declared > max_bytes:
        raise ProtocolError(f"frame declares {declared} bytes, more than the cap of {max_bytes}")
    dtype = WIRE_DTYPES[dtype_code]
    expected = dtype.itemsize
    for dim in shape:
        if dim > max_bytes:
            raise ProtocolError(f"frame shape {shape} has a dimension larger than the cap of {max_bytes}")
        expected *= dim
    if expected != declared:
        raise ProtocolError(f"shape {shape} of {dtype} needs {expected} bytes but the frame declares {declared}")
    return _KINDS[kind_code], dtype, shape, declared


def array_view(body: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A view of byte buffer ``body`` as ``dtype`` with ``shape`` (sizes checked); ProtocolError if numpy refuses."""
    try:
        return np.frombuffer(body, dtype=dtype).reshape(shape)
    except (ValueError, TypeError, OverflowError, MemoryError) as error:
        raise ProtocolError(f"payload cannot be viewed as {dtype} of shape {shape}") from error
