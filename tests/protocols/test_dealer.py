"""protocols.additive.dealer: seed-compressed correlations reconstruct, requests are validated, and the dealer talks
to the last party only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import protocols
import smpc
from network import ProtocolError
from network.local import FRAME_OVERHEAD_BYTES
from protocols.additive.dealer import (
    COMPARE,
    MATMUL,
    MAX_REQUEST_ELEMENTS,
    MUL,
    TRUNC,
    Request,
    dealer_correction,
    encode_plan,
    expand_parts,
    serve,
    unsigned_divide,
    unsigned_remainder,
)
from protocols.prg import KEY_BYTES, AesCtrPrg
from tests.support.harness import run_parties, share_from
from tests.support.strategies import matmul_shapes

RING = 1 << 64
PARTY_COUNTS = st.integers(2, 4)
STREAMS = st.integers(1, (1 << 63) - 1)
KEY_LISTS = st.lists(st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES), min_size=4, max_size=4, unique=True)


def reconstruct(keys: Sequence[bytes], n_parties: int, stream: int, request: Request
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, c) summed over the parties: each party expands its own key's stream as Correlated does (the
    last party only a and b), and the last party's c share is the dealer's correction."""
    prgs = [AesCtrPrg(key) for key in keys[:n_parties]]
    shape_a, shape_b, shape_c = request.output_shapes()
    correction = dealer_correction(prgs, stream, request)
    assert correction.dtype == torch.int64 and tuple(correction.shape) == shape_c
    a = torch.zeros(shape_a, dtype=torch.int64)
    b = torch.zeros(shape_b, dtype=torch.int64)
    c = correction.clone()
    for rank, prg in enumerate(prgs):
        if rank == n_parties - 1:
            a_i, b_i = expand_parts(prg, stream, (shape_a, shape_b))
        else:
            a_i, b_i, c_i = expand_parts(prg, stream, (shape_a, shape_b, shape_c))
            c += c_i
        a += a_i
        b += b_i
    return a, b, c


@given(PARTY_COUNTS, KEY_LISTS, STREAMS,
       hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4))
def test_beaver_triple_reconstructs(n_parties: int, keys: list[bytes], stream: int, shapes: Any) -> None:
    """Shares of a Beaver triple add up to (a, b, c) with c = a * b in the ring, broadcast shapes included."""
    shape_x, shape_y = shapes.input_shapes
    a, b, c = reconstruct(keys, n_parties, stream, Request(MUL, 0, shape_x, shape_y))
    assert tuple(c.shape) == tuple(shapes.result_shape)
    assert torch.equal(c, a * b)


@given(PARTY_COUNTS, KEY_LISTS, STREAMS, matmul_shapes())
def test_matrix_triple_reconstructs(n_parties: int, keys: list[bytes], stream: int,
                                    shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    """Shares of a matrix triple add up to (A, B, C) with C = A @ B mod 2^64, for vector, matrix and batched
    (broadcast) shapes."""
    a, b, c = reconstruct(keys, n_parties, stream, Request(MATMUL, 0, *shapes))
    assert torch.equal(c, torch.matmul(a, b))


@given(PARTY_COUNTS, KEY_LISTS, STREAMS, st.integers(1, 64),
       st.one_of(st.sampled_from([2, 3, 1000, 1 << 16, (1 << 63) - 1]), st.integers(2, (1 << 63) - 1)))
def test_truncation_pair_reconstructs(n_parties: int, keys: list[bytes], stream: int, count: int, divisor: int
                                      ) -> None:
    """Shares of a truncation pair add up to (r, s, u) with s == floor(r / d) and
    u == MSB(r) (s + ceil((2^64 - r) / d)) mod 2^64, r read as an unsigned 64-bit value."""
    r, _, stacked = reconstruct(keys, n_parties, stream, Request(TRUNC, divisor, (count,)))
    unsigned = [v % RING for v in r.tolist()]
    assert [v % RING for v in stacked[0].tolist()] == [v // divisor for v in unsigned]
    expected_u = [((v >> 63) * (v // divisor + -(-(RING - v) // divisor))) % RING for v in unsigned]
    assert [v % RING for v in stacked[1].tolist()] == expected_u


@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=20),
       st.one_of(st.integers(0, 62).map(lambda k: 1 << k), st.integers(2, (1 << 62) - 1)))
def test_unsigned_division_matches_python_integers(values: list[int], divisor: int) -> None:
    """The shift-and-mask path for powers of two and numpy's division otherwise: floor and remainder as Python's
    integers give them, over the whole uint64 range."""
    array = np.array(values, dtype=np.uint64)
    assert unsigned_divide(array, divisor).tolist() == [v // divisor for v in values]
    assert unsigned_remainder(array, divisor).tolist() == [v % divisor for v in values]


def test_triples_of_different_streams_differ() -> None:
    """Consecutive requests give unrelated triples (a triple is never reused)."""
    keys = [bytes([i]) * KEY_BYTES for i in range(3)]
    first = reconstruct(keys, 3, 1, Request(MUL, 0, (16,), (16,)))
    second = reconstruct(keys, 3, 2, Request(MUL, 0, (16,), (16,)))
    assert not torch.equal(first[0], second[0]) and not torch.equal(first[1], second[1])


# -- request encoding ------------------------------------------------------------------------------------
@given(st.sampled_from([MUL, MATMUL, TRUNC]), st.data())
def test_request_round_trip(kind: int, data: st.DataObject) -> None:
    """A valid request survives encode -> decode unchanged."""
    if kind == MUL:
        shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=5)).input_shapes
        request = Request(MUL, 0, *shapes)
    elif kind == MATMUL:
        request = Request(MATMUL, 0, *data.draw(matmul_shapes()))
    else:
        request = Request(TRUNC, data.draw(st.integers(2, (1 << 63) - 1)),
                          data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0)))
    encoded = request.encode()
    assert encoded.dtype == np.int64
    assert Request.decode(encoded) == request


def _raw(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


MALFORMED_LAYOUT = {
    "empty": _raw(),
    "kind only": _raw(MUL),
    "missing dims": _raw(MUL, 0, 2, 3),
    "missing shape_y count": _raw(MUL, 0, 1, 3),
    "trailing values": np.append(Request(MUL, 0, (2,), (2,)).encode(), 7),
    "negative ndim": _raw(MUL, 0, -1, 0),
    "negative ndim y": _raw(MUL, 0, 0, -2, 5),
    "ndim 9": _raw(MUL, 0, 9, *([1] * 9), 0),
    "negative dim": _raw(MUL, 0, 1, -3, 0),
    "unknown kind 0": Request(MUL, 0, (2,)).encode() * np.array([0, 1, 1, 1, 1]),
    "unknown kind 8": _raw(8, 0, 1, 2, 0),
    "helper comparison of a matrix": _raw(COMPARE, 0, 2, 2, 3, 0),
    "helper comparison with a second shape": _raw(COMPARE, 0, 1, 2, 1, 2),
    "divisor 1": _raw(TRUNC, 1, 1, 4, 0),
    "divisor 0": _raw(TRUNC, 0, 1, 4, 0),
    "divisor negative": _raw(TRUNC, -1000, 1, 4, 0),
    "too many elements": Request(MUL, 0, (MAX_REQUEST_ELEMENTS + 1,)).encode(),
    "too many matmul outputs": Request(MATMUL, 0, (1 << 14, 1), (1, 1 << 14)).encode(),
}

#: Well-formed layouts naming shapes no correlation exists for: the dealer cannot serve them.
MALFORMED_SHAPES = {
    "matmul inner dims differ": Request(MATMUL, 0, (2, 3), (4, 5)).encode(),
    "matmul of a 0-d operand": Request(MATMUL, 0, (), (3,)).encode(),
    "matmul batch dims clash": Request(MATMUL, 0, (2, 1, 3), (3, 3, 1)).encode(),
    "mul shapes not broadcastable": Request(MUL, 0, (2,), (3,)).encode(),
}

#: Element counts whose int64 product wraps around (2^64 -> 0, 2^120 -> 0) must not slip under the cap.
MALFORMED_SIZES = {
    "2^64 elements": Request(MUL, 0, (1 << 32, 1 << 32)).encode(),
    "2^120 elements": Request(TRUNC, 2, (1 << 40, 1 << 40, 1 << 40)).encode(),
    "2^64 elements in y": Request(MUL, 0, (1,), (1 << 16, 1 << 16, 1 << 16, 1 << 16)).encode(),
}


@pytest.mark.parametrize("raw", list(MALFORMED_LAYOUT.values()), ids=list(MALFORMED_LAYOUT))
def test_decode_rejects_malformed_layouts(raw: np.ndarray) -> None:
    """Truncated, overlong, badly counted or out-of-range request arrays raise ProtocolError."""
    with pytest.raises(ProtocolError):
        Request.decode(raw)


def test_dealer_process_refuses_helper_comparisons() -> None:
    """A helper comparison needs the dealer online (``protocols.additive.helped``); the dealer process, which
    only ever receives requests, refuses one (ProtocolError) instead of making half of it."""
    request = Request.decode(Request(COMPARE, 0, (4,)).encode())
    prgs = [AesCtrPrg(bytes(KEY_BYTES)), AesCtrPrg(bytes([1]) * KEY_BYTES)]
    with pytest.raises(ProtocolError, match="answers no comparison"):
        dealer_correction(prgs, 1, request)


class _OneMessage:
    """A transport stand-in that delivers one message to the dealer and records what it sends."""

    def __init__(self, message: np.ndarray) -> None:
        self.message, self.sent = message, []

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        return self.message

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        self.sent.append(tag)


@pytest.mark.parametrize("plan", [False, True])
def test_dealer_process_refuses_a_helper_comparison_before_making_anything(plan: bool) -> None:
    """A request, or a plan holding one after a Beaver triple: refused before any correction leaves."""
    requests = [Request(MUL, 0, (2,), (2,)), Request(COMPARE, 0, (4,))]
    transport = _OneMessage(encode_plan(requests, 1) if plan else requests[1].encode())
    prgs = [AesCtrPrg(bytes(KEY_BYTES)), AesCtrPrg(bytes([1]) * KEY_BYTES)]
    with pytest.raises(ProtocolError, match="answers no comparison"):
        serve(transport, prgs)  # type: ignore[arg-type]
    assert transport.sent == []


@pytest.mark.parametrize("raw", list(MALFORMED_SHAPES.values()), ids=list(MALFORMED_SHAPES))
def test_decode_rejects_incompatible_shapes(raw: np.ndarray) -> None:
    """Requests whose two shapes cannot be multiplied raise ProtocolError (not an arbitrary torch error)."""
    with pytest.raises(ProtocolError):
        Request.decode(raw)


@pytest.mark.parametrize("raw", list(MALFORMED_SIZES.values()), ids=list(MALFORMED_SIZES))
def test_decode_rejects_overflowing_sizes(raw: np.ndarray) -> None:
    """Requests for more than MAX_REQUEST_ELEMENTS elements raise ProtocolError even when the element count
    overflows 64-bit arithmetic."""
    with pytest.raises(ProtocolError):
        Request.decode(raw)


# -- who talks to the dealer -----------------------------------------------------------------------------
@pytest.mark.parametrize("n_parties", [3, 4])
def test_dealer_sends_data_to_the_last_party_only(n_parties: int) -> None:
    """After products, matmuls, truncations and a mean, parties 0..n-2 have received exactly one message from
    the dealer (the 16-byte key set-up) and sent it nothing; the last party sent every request and received
    every correction."""
    x = torch.linspace(-3.0, 3.0, 12, dtype=torch.float64).reshape(3, 4)

    def program(session: smpc.Session) -> dict[str, int]:
        sx, sy = share_from(session, [x, x + 1.0])
        ((sx * sy) @ sy.T).mean().reveal()
        protocols.truncate(session.party, sx.local_share, 1000)
        stats = session.party.transport.stats
        dealer = session.party.dealer_id
        return {
            "messages_in": stats.messages_received.get(dealer, 0),
            "bytes_in": stats.bytes_received.get(dealer, 0),
            "messages_out": stats.messages_sent.get(dealer, 0),
            "session_bytes_in": session.stats.dealer_bytes_received,
            "session_bytes_out": session.stats.dealer_bytes_sent,
            "requests": session.party.dealer_requests,
        }

    results = run_parties(program, n_parties)
    key_setup = FRAME_OVERHEAD_BYTES + KEY_BYTES
    for rank, counts in enumerate(results[:-1]):
        assert counts["messages_in"] == 1, f"party {rank} received dealer messages beyond the key set-up"
        assert counts["bytes_in"] == counts["session_bytes_in"] == key_setup, rank
        assert counts["messages_out"] == counts["session_bytes_out"] == 0, rank
    last = results[-1]
    requests = last["requests"]
    assert requests >= 5 and all(counts["requests"] == requests for counts in results)
    assert last["messages_out"] == requests and last["messages_in"] == 1 + requests
    assert last["session_bytes_in"] > key_setup
