"""The mailbox on its own: continuations assembled in place, every out-of-place frame refused, the per-peer budget.

The same refusals over real sockets, naming the peer, are in ``test_zmq_hostile.py``; the volume fuzzing of what a
header and its continuations may claim is in ``test_frame_fuzz.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from network.delivery import MESSAGE_CHARGE_BYTES, Mailbox
from network.errors import DuplicateTagError, ProtocolError
from network.framing import CHUNK_BYTES, Header, Kind, decode_header, encode_header

SESSION = bytes(range(16))


def _head(kind: Kind, tag: int, array: np.ndarray) -> Header:
    return decode_header(encode_header(kind, session_id=SESSION, sender=1, seq=0, tag=tag, array=array),
                         session_id=SESSION, max_bytes=1 << 40)


def _feed(mailbox: Mailbox, kind: Kind, tag: int, declared: np.ndarray, payload: bytes) -> np.ndarray | None:
    head = _head(kind, tag, declared)
    return mailbox.store(1, "party 1", head, mailbox.check(1, "party 1", head, payload))


def _more(mailbox: Mailbox, tag: int, payload: bytes) -> np.ndarray | None:
    return _feed(mailbox, Kind.MORE, tag, np.frombuffer(payload, dtype=np.uint8), payload)


def test_a_message_in_three_frames_is_assembled_then_taken_and_its_budget_freed() -> None:
    array = np.arange(CHUNK_BYTES // 4 + 5, dtype="<i8")  # two full chunks and 40 bytes
    data = array.tobytes()
    mailbox = Mailbox(receiver="party 0", budget=1 << 30)
    assert _feed(mailbox, Kind.DATA, 9, array, data[:CHUNK_BYTES]) is None
    assert mailbox.held(1) == array.nbytes + MESSAGE_CHARGE_BYTES
    assert _more(mailbox, 9, data[CHUNK_BYTES : 2 * CHUNK_BYTES]) is None
    assert mailbox.take(1, 9) is None  # incomplete messages are not handed out
    done = _more(mailbox, 9, data[2 * CHUNK_BYTES :])
    assert done is not None and np.array_equal(done, array)
    assert mailbox.take(1, 9) is done and mailbox.held(1) == 0


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([(Kind.MORE, 1, 8)], "continuation of tag 1 without a first frame"),
        ([(Kind.DATA, 1, 8), (Kind.MORE, 2, 8)], "continuation of tag 2 while tag 1 is incomplete"),
        ([(Kind.DATA, 1, 8), (Kind.MORE, 1, 24)], r"continuation of tag 1 overruns it \(8 \+ 24 bytes of 24\)"),
        ([(Kind.DATA, 1, 8), (Kind.MORE, 1, 0)], "empty continuation of tag 1"),
        ([(Kind.DATA, 1, 8), (Kind.DATA, 2, 8)], r"tag 2 starts while tag 1 is incomplete \(8 of 24 bytes\)"),
        ([(Kind.DATA, 1, 32)], "declared 24 bytes but payload has 32"),
    ],
)
def test_frames_out_of_place_are_refused_and_change_nothing(frames: list[tuple[Kind, int, int]], message: str) -> None:
    """Every DATA frame here declares 3 int64 (24 bytes) and carries the given number of bytes."""
    mailbox = Mailbox(receiver="party 0", budget=1 << 20)
    *good, (kind, tag, size) = frames
    for good_kind, good_tag, good_size in good:
        _feed(mailbox, good_kind, good_tag, np.zeros(3, dtype=np.int64), bytes(good_size))
    held = mailbox.held(1)
    declared = np.zeros(3, dtype=np.int64) if kind == Kind.DATA else np.zeros(size, dtype=np.uint8)
    head = _head(kind, tag, declared)
    with pytest.raises(ProtocolError, match=f"^bad frame from party 1: {message}"):
        mailbox.check(1, "party 1", head, bytes(size))
    assert mailbox.held(1) == held


def test_the_budget_counts_waiting_and_incomplete_messages_and_a_duplicate_is_refused() -> None:
    small = np.zeros(100, dtype=np.uint8)
    cost = small.nbytes + MESSAGE_CHARGE_BYTES
    mailbox = Mailbox(receiver="party 0", budget=2 * cost + 50)
    _feed(mailbox, Kind.DATA, 1, small, small.tobytes())
    with pytest.raises(DuplicateTagError, match="^party 1 sent tag 1 to party 0 twice$"):
        _feed(mailbox, Kind.DATA, 1, small, small.tobytes())
    assert mailbox.held(1) == cost
    # A first frame is charged its whole declared length: over the budget, it is refused before allocating.
    with pytest.raises(ProtocolError, match=r"^party 1 would have 12148 bytes waiting here with tag 2, more than "
                                            rf"max_buffered_bytes={2 * cost + 50}"):
        _feed(mailbox, Kind.DATA, 2, np.zeros(10_000, dtype=np.uint8), bytes(10))
    assert _feed(mailbox, Kind.DATA, 2, small, bytes(10)) is None
    assert mailbox.held(1) == 2 * cost
    assert _more(mailbox, 2, bytes(90)) is not None
    with pytest.raises(ProtocolError, match="would have"):
        _feed(mailbox, Kind.DATA, 3, np.zeros(0, dtype=np.uint8), b"")  # empty messages are charged too
    assert mailbox.take(1, 1) is not None and mailbox.held(1) == cost
    assert _feed(mailbox, Kind.DATA, 3, np.zeros(0, dtype=np.uint8), b"") is not None
