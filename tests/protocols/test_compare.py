"""protocols.additive.compare on raw ring elements: exact results on the whole of Z_2^64, and the documented costs.

Every expected value comes from int64 torch (which wraps modulo 2^64 like the ring).  ``ltz`` must be right for
every ring element, whatever way the parties' shares split it; ``maximum`` compares by differences, so its
inputs stay within |x| < 2^62 (every difference is then a ring element of the right sign).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import protocols
import smpc
from network.local import FRAME_OVERHEAD_BYTES
from protocols.additive.compare import compress_bits, ltz_bytes, ltz_dealer_bytes
from protocols.family import Shares
from tests.support.checks import DEALER_PARTIES, PARTIES
from tests.support.harness import run_parties
from tests.support.strategies import SHAPES

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
#: The ring elements where a comparison of a 64-bit word is most likely to go wrong.
RING_EXTREMES = (INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX)
#: Bound on maximum's inputs, so that every difference of two of them is a ring element of the right sign.
DIFFERENCE_SAFE = (1 << 62) - 1
#: Beaver product of the bit and the operand (relu, absolute): 2 words per element and per other party.
PRODUCT_BYTES = 16


def ring_words(limit_low: int = INT64_MIN, limit_high: int = INT64_MAX) -> st.SearchStrategy[int]:
    """Ring elements in [limit_low, limit_high], the extremes (and their neighbours) drawn often."""
    extremes = [v for v in (*RING_EXTREMES, limit_low, limit_low + 1, limit_high - 1, limit_high)
                if limit_low <= v <= limit_high]
    return st.one_of(st.sampled_from(extremes), st.integers(limit_low, limit_high))


def word_arrays(shape: tuple[int, ...], elements: st.SearchStrategy[int]) -> st.SearchStrategy[torch.Tensor]:
    return hnp.arrays(np.int64, shape, elements=elements).map(torch.from_numpy)


def share_raw(session: smpc.Session, values: Sequence[torch.Tensor]) -> list[Shares]:
    """Share raw int64 ``values[i]`` from party ``i % n`` (every party passes the same list), in the
    session's family."""
    shared = []
    for index, value in enumerate(values):
        owner = index % session.world_size
        shared.append(session.family.share(value if session.rank == owner else None, owner))
    return shared


def open_all(session: smpc.Session, outputs: dict[str, Shares]) -> dict[str, torch.Tensor]:
    return {name: session.family.reveal(value) for name, value in outputs.items()}


def run_and_agree(program: Callable[[smpc.Session], dict[str, Any]], n_parties: int) -> dict[str, Any]:
    """Run on every party; all parties must have opened the same values.  Returns party 0's dict."""
    results = run_parties(program, n_parties)
    for rank, other in enumerate(results[1:], start=1):
        assert other.keys() == results[0].keys()
        for name, value in results[0].items():
            assert torch.equal(other[name], value), f"party {rank} opened a different {name}"
    return results[0]


def assert_equal_all(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Exact equality (dtype, shape, values) of every named result; reports every mismatch."""
    assert got.keys() == expected.keys()
    misses = []
    for name, want in expected.items():
        value = got[name]
        if value.dtype != want.dtype or value.shape != want.shape:
            misses.append(f"{name}: {value.dtype} {tuple(value.shape)} != {want.dtype} {tuple(want.shape)}")
        elif not torch.equal(value, want):
            wrong = (value != want).reshape(-1).nonzero().reshape(-1)[:5].tolist()
            misses.append(f"{name}: wrong at flat positions {wrong}: got {value.reshape(-1)[wrong].tolist()}, "
                          f"expected {want.reshape(-1)[wrong].tolist()}")
    assert not misses, "; ".join(misses)


def first_max_onehot(values: torch.Tensor, dim: int) -> torch.Tensor:
    """int64 one-hot of torch.argmax along ``dim`` (torch picks the first of equal maxima)."""
    index = torch.argmax(values, dim=dim, keepdim=True)
    return torch.zeros_like(values).scatter_(dim, index, 1)


# -- exactness -------------------------------------------------------------------------------------------
@PARTIES
@pytest.mark.parametrize("owner", ["first", "last"])
def test_ltz_on_ring_extremes_and_random_words(n_parties: int, owner: str) -> None:
    """[x < 0] for -2^63, -2^63+1, -1, 0, 1, 2^63-1 and 4,000 uniform 64-bit words, shared from the first or
    the last party: exact, and an unscaled int64 0/1."""
    rng = np.random.default_rng(20240611)
    random_words = rng.integers(INT64_MIN, INT64_MAX, size=4000, dtype=np.int64, endpoint=True)
    values = torch.cat([torch.tensor(RING_EXTREMES, dtype=torch.int64), torch.from_numpy(random_words)])
    owner_rank = 0 if owner == "first" else n_parties - 1

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        family = session.family
        shares = family.share(values if session.rank == owner_rank else None, owner_rank)
        return open_all(session, {"ltz": family.call(protocols.ltz, shares)})

    assert_equal_all(run_and_agree(program, n_parties), {"ltz": (values < 0).to(torch.int64)})


@DEALER_PARTIES
@given(data=st.data())
def test_ltz_whatever_the_split_into_shares(n_parties: int, data: st.DataObject) -> None:
    """Each party's share is drawn directly from the whole ring (extremes often), so the shares' sum wraps
    in every way; ltz of the sum (mod 2^64) is still exact."""
    shape = data.draw(SHAPES, label="shape")
    shares = [data.draw(word_arrays(shape, ring_words()), label=f"share {rank}") for rank in range(n_parties)]
    total = torch.zeros(shape, dtype=torch.int64)
    for share in shares:
        total += share

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        return open_all(session, {"ltz": (protocols.ltz(session.party, shares[session.rank].clone()),)})

    assert_equal_all(run_and_agree(program, n_parties), {"ltz": (total < 0).to(torch.int64)})


@PARTIES
@given(data=st.data())
def test_ring_functions_match_int64_torch(n_parties: int, data: st.DataObject) -> None:
    """ltz, sign, absolute, relu and select on any ring element, and maximum (values and first-index one-hot)
    along a drawn dim, against int64 torch.  Values come from a small set (many ties) or the whole range.
    sign negates its input, and -(-2^63) wraps to -2^63, so sign is checked on the other ring elements
    (-2^63 is no fixed-point value and no difference of two)."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), label="shape")
    tie_heavy = data.draw(st.booleans(), label="tie heavy")
    elements = st.sampled_from([-2, -1, 0, 1, 2]) if tie_heavy else ring_words()
    x = data.draw(word_arrays(shape, elements), label="x")
    y = data.draw(word_arrays(shape, ring_words()), label="y")
    bounded = data.draw(word_arrays(shape, st.sampled_from([-3, 0, 3]) if tie_heavy
                                    else ring_words(-DIFFERENCE_SAFE, DIFFERENCE_SAFE)), label="bounded")
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        family = session.family
        sx, sy, sb = share_raw(session, [x, y, bounded])
        bit = family.call(protocols.ltz, sx)
        maximum, onehot = family.call(protocols.maximum, sb, dim=dim)
        return open_all(session, {
            "ltz": bit, "sign": family.call(protocols.sign, sx), "absolute": family.call(protocols.absolute, sx),
            "relu": family.call(protocols.relu, sx), "select": family.call(protocols.select, bit, sx, sy),
            "maximum": maximum, "onehot": onehot,
        })

    negative = x < 0
    got = run_and_agree(program, n_parties)
    negatable = x != INT64_MIN
    got["sign"] = got["sign"][negatable]
    assert_equal_all(got, {
        "ltz": negative.to(torch.int64), "sign": torch.sign(x)[negatable], "absolute": torch.where(negative, -x, x),
        "relu": torch.where(negative, torch.zeros_like(x), x), "select": torch.where(negative, x, y),
        "maximum": torch.amax(bounded, dim=dim), "onehot": first_max_onehot(bounded, dim),
    })


@DEALER_PARTIES
@given(data=st.data())
def test_binary_and_and_bit_conversion(n_parties: int, data: st.DataObject) -> None:
    """binary_and of XOR-shared words (broadcasting a row against a stack, as ltz does) gives XOR shares of
    x & y; xor_bit_to_additive turns XOR shares of bits into additive shares of the same 0/1."""
    count = data.draw(st.integers(1, 6), label="count")
    words = st.integers(INT64_MIN, INT64_MAX)
    x_shares = [data.draw(word_arrays((count,), words), label=f"x share {r}") for r in range(n_parties)]
    y_shares = [data.draw(word_arrays((2, count), words), label=f"y share {r}") for r in range(n_parties)]
    bit_shares = [data.draw(word_arrays((count,), st.integers(0, 1)), label=f"bit share {r}")
                  for r in range(n_parties)]

    def xor_all(shares: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros_like(shares[0])
        for share in shares:
            total ^= share
        return total

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        party, rank = session.party, session.rank
        product = protocols.binary_and(party, x_shares[rank], y_shares[rank])
        gathered = party.open(product, "test open", xor=True)
        additive = protocols.additive.compare.xor_bit_to_additive(party, bit_shares[rank])
        return {"and": gathered, "bit": protocols.reveal(party, additive)}

    assert_equal_all(run_and_agree(program, n_parties), {
        "and": xor_all(x_shares) & xor_all(y_shares), "bit": xor_all(bit_shares),
    })


def test_maximum_refuses_an_empty_dimension() -> None:
    """The maximum of zero elements is undefined: ValueError on every party, as torch.amax raises."""
    def program(session: smpc.Session) -> str:
        try:
            protocols.maximum(session.party, torch.zeros(0, 3, dtype=torch.int64), 0)
        except ValueError:
            return "ValueError"
        return "no error"

    assert run_parties(program, 2) == ["ValueError", "ValueError"]


@given(st.lists(st.integers(INT64_MIN, INT64_MAX), min_size=1, max_size=9), st.booleans())
def test_compress_bits_keeps_every_other_bit_in_order(words: list[int], odd: bool) -> None:
    """Bit 2i (+1 if odd) of the words' bit stream, read word after word, is bit i of the result's stream."""
    stream = [(w >> i) & 1 for w in words for i in range(64)]
    kept = stream[int(odd)::2] + [0] * (64 * (-(-len(words) // 2)) - len(stream) // 2)
    result = compress_bits(torch.tensor(words, dtype=torch.int64), odd=odd).tolist()
    assert [(w >> i) & 1 for w in result for i in range(64)] == kept


@given(st.lists(st.lists(st.integers(INT64_MIN, INT64_MAX), min_size=3, max_size=3), min_size=1, max_size=4),
       st.booleans())
def test_compress_bits_compresses_each_row_of_a_matrix_as_it_would_alone(rows: list[list[int]], odd: bool) -> None:
    matrix = compress_bits(torch.tensor(rows, dtype=torch.int64), odd=odd)
    for row, result in zip(rows, matrix):
        assert torch.equal(result, compress_bits(torch.tensor(row, dtype=torch.int64), odd=odd))


# -- costs -----------------------------------------------------------------------------------------------
def measure(session: smpc.Session, function: Callable[[], Any]) -> dict[str, int]:
    """Counters of one call, from zero (the inputs were shared before)."""
    session.stats.reset()
    function()
    return session.stats.as_dict()


@DEALER_PARTIES
@pytest.mark.parametrize("count", [1, 37, 1000])
def test_costs_of_ltz_sign_relu_absolute(n_parties: int, count: int) -> None:
    """Per call, from party counters: ltz 8 rounds (one message per other party each), sign 8, relu and
    absolute 9; bytes sent = documented payload per element * (n-1) * count + 114 header bytes per message;
    every party sends and receives alike and none but the last talks to the dealer."""
    values = torch.arange(count, dtype=torch.int64) - count // 2

    def program(session: smpc.Session) -> dict[str, dict[str, int]]:
        party = session.party
        shares = share_raw(session, [values])[0][0]  # the dealer family's one part
        return {name: measure(session, lambda f=function: f(party, shares)) for name, function in {
            "ltz": protocols.ltz, "sign": protocols.sign, "relu": protocols.relu, "absolute": protocols.absolute,
        }.items()}

    others = n_parties - 1
    documented = {  # name: (rounds, payload bytes per other party: ltz's cost model, the product's 16 a pair)
        "ltz": (8, ltz_bytes(count)), "sign": (8, ltz_bytes(2 * count)),
        "relu": (9, ltz_bytes(count) + PRODUCT_BYTES * count),
        "absolute": (9, ltz_bytes(count) + PRODUCT_BYTES * count),
    }
    results = run_parties(program, n_parties)
    for rank, measured in enumerate(results):
        for name, (rounds, payload) in documented.items():
            stats = measured[name]
            expected_bytes = payload * others + FRAME_OVERHEAD_BYTES * stats["messages"]
            assert (stats["rounds"], stats["messages"]) == (rounds, rounds * others), (rank, name, stats)
            assert stats["bytes_sent"] == stats["bytes_received"] == expected_bytes, (rank, name, stats)
            dealer_traffic = (stats["dealer_bytes_sent"], stats["dealer_bytes_received"])
            if rank < n_parties - 1:
                assert dealer_traffic == (0, 0), (rank, name, "talked to the dealer")
            else:
                assert min(dealer_traffic) > 0, (rank, name)


@DEALER_PARTIES
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9])
def test_costs_of_maximum(n_parties: int, count: int) -> None:
    """maximum over m elements (along dim 1 of a 3 x m x 2 tensor): 9 ceil(log2 m) rounds; bytes sent per level
    one ltz on its pairs plus 16 (m+1) (n-1) per compared pair (m-1 pairs per reduced position in all), plus
    114 per message."""
    values = torch.arange(3 * count * 2, dtype=torch.int64).reshape(3, count, 2) % 7

    def program(session: smpc.Session) -> dict[str, int]:
        shares = share_raw(session, [values])[0][0]  # the dealer family's one part
        return measure(session, lambda: protocols.maximum(session.party, shares, 1))

    others, positions = n_parties - 1, 3 * 2
    rounds = 9 * math.ceil(math.log2(count))
    payload, left = 0, count
    while left > 1:
        pairs = left // 2 * positions
        payload += (ltz_bytes(pairs) + PRODUCT_BYTES * (count + 1) * pairs) * others
        left -= left // 2
    for rank, stats in enumerate(run_parties(program, n_parties)):
        assert (stats["rounds"], stats["messages"]) == (rounds, rounds * others), (rank, stats)
        assert stats["bytes_sent"] == payload + FRAME_OVERHEAD_BYTES * stats["messages"], (rank, stats)


@pytest.mark.parametrize("n_parties", [2, 3, 4])
def test_ltz_dealer_traffic_goes_to_the_last_party_only(n_parties: int) -> None:
    """During one ltz of 500 elements, parties 0..n-2 exchange nothing with the dealer; the last party sends
    8 requests and receives 8 corrections totalling LTZ_DEALER_BYTES per element plus headers."""
    count = 500

    def program(session: smpc.Session) -> dict[str, int]:
        shares = share_raw(session, [torch.zeros(count, dtype=torch.int64)])[0][0]
        session.stats.reset()
        protocols.ltz(session.party, shares)
        stats = session.party.transport.stats
        dealer = session.party.dealer_id
        return {"bytes_in": stats.bytes_received.get(dealer, 0), "messages_in": stats.messages_received.get(dealer, 0),
                "messages_out": stats.messages_sent.get(dealer, 0)}

    results = run_parties(program, n_parties)
    for rank, counts in enumerate(results[:-1]):
        assert counts == {"bytes_in": 0, "messages_in": 0, "messages_out": 0}, rank
    assert results[-1] == {"bytes_in": ltz_dealer_bytes(count) + 8 * FRAME_OVERHEAD_BYTES,
                           "messages_in": 8, "messages_out": 8}


def test_ltz_docstring_states_the_costs_its_cost_model_gives() -> None:
    """The per-element costs ltz documents are its cost functions' limits (party bytes, dealer bytes), and one
    element costs what the docstring says."""
    documented = " ".join((protocols.ltz.__doc__ or "").split())
    large = 1 << 20
    assert f"= {ltz_bytes(large) / large:.1f}, times (n-1)" in documented
    assert f"{ltz_dealer_bytes(large) / large:.1f} bytes per element" in documented
    assert f"{ltz_bytes(1)} for one element" in documented
