"""The replicated family on its own: the maths of 2-out-of-3 sharing without a transport, the rounds and bytes
each party spends per operation, that no dealer takes part, and what each party sees (uniform, and alike for
two very different inputs: the same statistical battery as the dealer family's views)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from fixedpoint.ring import ring_matmul, ring_matmul_add
from network.framing import HEADER_SIZE
from network.local import FRAME_OVERHEAD_BYTES
from protocols.additive.dealer import truncation_values
from protocols.additive.helped import MODULUS, helped_ltz_bytes, helped_ltz_dealer_bytes
from protocols.observe import OpeningTrace
from protocols.replicated import arithmetic as arith
from protocols.replicated import shares as rep
from smpc.bench.suite import replicated_theory
from tests.support.harness import REPLICATED, run_parties
from tests.support.recording import RecordingTransport
from tests.support.statistics import (
    ALPHA,
    BYTE_DOF,
    as_words,
    bit_failures,
    chi_square_critical,
    homogeneity_statistic,
    normal_upper_quantile,
    residue_failures,
    residue_homogeneity_statistic,
    two_proportion_statistic,
    uniformity_failures,
)

WORDS = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=4, max_size=4)


# -- the maths, without a transport ------------------------------------------------------------------------
@given(value=WORDS, first=WORDS, second=WORDS)
def test_pairs_recombine_and_two_of_two_views_add_up(value: list[int], first: list[int], second: list[int]) -> None:
    secret, a, b = (torch.tensor(v, dtype=torch.int64) for v in (value, first, second))
    components = rep.split(secret, a, b)
    pairs = [rep.pair_of(components, rank) for rank in range(3)]
    for rank, pair in enumerate(pairs):
        # party i's second part is party i+1's first, and the part it lacks is party i+1's second
        assert torch.equal(pair[1], pairs[rep.next_rank(rank)][0])
        assert torch.equal(rep.recombine(pair, pairs[rep.next_rank(rank)][1]), secret)
    views = [rep.two_of_two(pair, rank) for rank, pair in enumerate(pairs)]
    assert views[0] is None and torch.equal(views[1] + views[2], secret)


@given(x=WORDS, y=WORDS, masks=st.lists(WORDS, min_size=4, max_size=4))
def test_local_products_add_up_to_the_product(x: list[int], y: list[int], masks: list[list[int]]) -> None:
    """The three parties' z_i add up to x * y (every cross term once), and the pair masks' zero shares to 0."""
    tx, ty = torch.tensor(x, dtype=torch.int64), torch.tensor(y, dtype=torch.int64)
    m = [torch.tensor(v, dtype=torch.int64) for v in masks]
    cx, cy = rep.split(tx, m[0], m[1]), rep.split(ty, m[2], m[3])
    z = [rep.local_product(rep.pair_of(cx, r), rep.pair_of(cy, r), r) for r in range(3)]
    assert torch.equal(z[0] + z[1] + z[2], tx * ty)
    pair_key = {(0, 1): m[0], (1, 2): m[1], (0, 2): m[2]}

    def key(a: int, b: int) -> torch.Tensor:
        return pair_key[min(a, b), max(a, b)]

    zero = [rep.zero_share(key(r, rep.next_rank(r)), key(r, rep.previous_rank(r))) for r in range(3)]
    assert torch.equal(zero[0] + zero[1] + zero[2], torch.zeros(4, dtype=torch.int64))


@given(data=st.data(), m=st.integers(1, 3), k=st.integers(1, 4), p=st.integers(1, 3))
def test_local_matmul_shares_add_up_and_party_0_makes_one_product(data: st.DataObject, m: int, k: int,
                                                                  p: int) -> None:
    """The split of ``local_product`` for ring matmuls: the z_i add up to x @ y modulo 2^64 (checked against
    Python integers), party 0 calls the product once and parties 1 and 2 twice (5 GEMMs, not 6)."""
    def matrix(rows: int, cols: int) -> torch.Tensor:
        values = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows * cols, max_size=rows * cols))
        return torch.tensor(values, dtype=torch.int64).reshape(rows, cols)

    tx, ty = matrix(m, k), matrix(k, p)
    cx = rep.split(tx, matrix(m, k), matrix(m, k))
    cy = rep.split(ty, matrix(k, p), matrix(k, p))
    calls: list[int] = []

    def counted(a: torch.Tensor, b: torch.Tensor, rank: int) -> torch.Tensor:
        calls.append(rank)
        return ring_matmul(a, b)

    def counted_add(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, rank: int) -> torch.Tensor:
        calls.append(rank)
        return ring_matmul_add(out, a, b)

    z = [rep.local_product(rep.pair_of(cx, r), rep.pair_of(cy, r), r, lambda a, b, r=r: counted(a, b, r),
                           lambda out, a, b, r=r: counted_add(out, a, b, r))
         for r in range(3)]
    expected = [[sum(int(tx[i, j]) * int(ty[j, c]) for j in range(k)) for c in range(p)] for i in range(m)]
    total = [[(int(z[0][i, c]) + int(z[1][i, c]) + int(z[2][i, c]) - expected[i][c]) % 2**64 for c in range(p)]
             for i in range(m)]
    assert total == [[0] * p for _ in range(m)]
    assert calls == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="0, 1 or 2"):
        rep.local_product(rep.pair_of(cx, 0), rep.pair_of(cy, 0), 3)


@given(data=st.data(), f=st.integers(1, 16), count=st.integers(1, 9))
def test_short_truncation_correction_gives_the_pair(data: st.DataObject, f: int, count: int) -> None:
    """For d = 2^f (f <= 16) party 0's short correction and party 1's pair from the same stream
    (``pair_words``: count + ceil(count / 4) words) add up to the pair (s, u) of ``truncation_values`` modulo
    2^64, and the correction is int64 words: count for s, ceil(count / 4) for u."""
    divisor = 1 << f
    size = arith.pair_words(count, divisor)
    assert size == count + -(-count // 4)
    word = st.one_of(st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1))
    mask = torch.tensor(data.draw(st.lists(word, min_size=count, max_size=count)), dtype=torch.int64)
    stream = torch.tensor(data.draw(st.lists(word, min_size=size, max_size=size)), dtype=torch.int64)
    assert arith.short_correction_bits(divisor) == f
    wire = arith.short_correction(mask, stream.clone(), divisor)
    assert wire.dtype == torch.int64 and wire.numel() == size
    first = arith.party_one_pair(stream, count, divisor)
    second = arith.from_short_correction(wire, count, divisor)
    s, u = truncation_values(mask.clone(), divisor)
    assert torch.equal(first[0] + second[0], s)
    assert torch.equal(first[1] + second[1], u)
    with pytest.raises(ValueError, match="words"):
        arith.from_short_correction(wire[:-1], count, divisor)


def test_short_corrections_only_for_small_powers_of_two() -> None:
    assert [arith.short_correction_bits(d) for d in (1, 2, 3, 2**16, 2**16 + 2, 2**17, 6)] == [0, 1, 0, 16, 0, 0, 0]
    assert [arith.top_bits_factor(f) for f in (1, 2, 16)] == [-(2**63), 2**62, 2**48]
    stream = torch.arange(10, dtype=torch.int64)  # any other divisor: the full pair, 2 words per element
    first = arith.party_one_pair(stream, 5, 3)
    assert arith.pair_words(5, 3) == 10 and torch.equal(first[0], stream[:5]) and torch.equal(first[1], stream[5:])


@given(st.lists(st.integers(0, 400_000), min_size=1, max_size=5))
def test_pipelined_pieces_cover_every_element_once_in_blocks(sizes: list[int]) -> None:
    """The blocks of a pipelined fused truncation: each value's pieces are contiguous runs covering it in order
    (one empty piece for an empty value), every block but the last holds exactly ``block`` elements, and there
    are ceil(total / block) blocks, at most PIPELINE_MAX_BLOCKS."""
    pieces, groups = arith.pipelined_pieces(sizes)
    total = sum(sizes)
    block = max(arith.PIPELINE_BLOCK, -(-total // arith.PIPELINE_MAX_BLOCKS))
    for item, size in enumerate(sizes):
        runs = [(start, stop) for value, start, stop in pieces if value == item]
        assert runs[0][0] == 0 and runs[-1][1] == size
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(runs, runs[1:]))
    assert [index for group in groups for index in group] == list(range(len(pieces)))
    filled = [sum(pieces[index][2] - pieces[index][1] for index in group) for group in groups]
    assert all(f == block for f in filled[:-1]) and filled[-1] <= block
    assert len(groups) == max(1, -(-total // block)) <= arith.PIPELINE_MAX_BLOCKS


def _large_truncations(session: smpc.Session) -> dict[str, Any]:
    count = 3 * arith.PIPELINE_BLOCK + 123
    x = session.share(torch.linspace(-3, 3, count, dtype=torch.float64) if session.rank == 0 else None, owner=0)
    y = session.share(torch.linspace(2, -1, count, dtype=torch.float64) if session.rank == 1 else None, owner=1)
    u = session.share(torch.tensor([0.5, -1.25, 7.0]) if session.rank == 2 else None, owner=2)
    session.stats.reset()
    trace = OpeningTrace()
    session.party.observers.append(trace)
    big, small = x * y, u * u
    big.settle()  # settles both: the session's waiting truncations go together
    session.party.observers.remove(trace)
    stats = session.stats.as_dict()
    return {"big": big.reveal(), "small": small.reveal(), "stats": stats, "openings": trace.openings}


def test_a_large_fused_truncation_runs_in_blocks() -> None:
    """A product of 3 PIPELINE_BLOCK + 123 elements settled with a small one: right values (within the
    inputs' encoding error, (3 + 2) 2^-17, plus the truncation's unit 2^-16: below 2^-14),
    the 2 rounds of one truncation, and per element the bytes of the unpipelined protocol (parties 1 and 2:
    8 and a 16-bit lane back to replicated shares, party 0: its short correction per piece), with two messages
    per block from parties 1 and 2."""
    results = run_parties(_large_truncations, REPLICATED)
    count = 3 * arith.PIPELINE_BLOCK + 123
    plain = torch.linspace(-3, 3, count, dtype=torch.float64) * torch.linspace(2, -1, count, dtype=torch.float64)
    pieces, groups = arith.pipelined_pieces([count, 3])
    assert len(groups) > 1
    for rank, result in enumerate(results):
        assert (result["big"] - plain).abs().max() < 2**-14
        assert torch.equal(result["small"], torch.tensor([0.25, 1.5625, 49.0], dtype=torch.float64))
        stats = result["stats"]
        assert stats["rounds"] == 2
        payload = stats["bytes_sent"] - FRAME_OVERHEAD_BYTES * stats["messages"]
        if rank == 0:
            sizes = [stop - start for _, start, stop in pieces]
            assert (payload, stats["messages"]) == (sum(8 * n + 8 * -(-n // 4) for n in sizes), len(pieces))
        else:
            lanes = sum(8 * -(-sum(pieces[i][2] - pieces[i][1] for i in group) // 4) for group in groups)
            assert (payload, stats["messages"]) == (8 * (count + 3) + lanes, 2 * len(groups))
    # the benchmark's cost model: the largest party's payload and messages, and 2 rounds, not 2 per block
    theory = replicated_theory([{"openings": result["openings"]} for result in results])
    most = max(results, key=lambda result: result["stats"]["bytes_sent"])["stats"]
    assert theory == (most["bytes_sent"] - FRAME_OVERHEAD_BYTES * most["messages"],
                      HEADER_SIZE * most["messages"], 2)


def _truncated_values(session: smpc.Session, values: list[list[int]], divisors: list[int]) -> list[list[int]]:
    """``fused_truncate_many`` of each value's additive view (x_0 of its replicated shares) by its divisor in
    one call, bound 2^40; the revealed results as Python integers."""
    family = session.family
    shared = [family.share(torch.tensor(v, dtype=torch.int64) if session.rank == 0 else None, 0) for v in values]
    items = [(family.additive(x), d, 40) for x, d in zip(shared, divisors)]
    return [family.reveal(result).tolist() for result in arith.fused_truncate_many(family, items)]


def _check_truncated(values: list[list[int]], divisors: list[int], results: list[list[list[int]]]) -> None:
    """Every party revealed floor(z / d) or that plus one, exactly, for every element."""
    for revealed in results:
        assert len(revealed) == len(values)
        for value, divisor, got in zip(values, divisors, revealed):
            assert len(got) == len(value)
            assert all(g - z // divisor in (0, 1) for z, g in zip(value, got)), (divisor, value, got)


@given(data=st.data(), fs=st.lists(st.integers(1, 17), min_size=1, max_size=3))
def test_short_return_gives_the_exact_truncation(data: st.DataObject, fs: list[int]) -> None:
    """The short return to replicated shares (``fused_truncate`` step 3: every divisor 2^f, f <= 16; one f of
    17 or a divisor of 3 takes the whole call back to step 4): floor(z / d) or that plus one, exactly, for
    values of any size (empty ones too) and mixed divisors in one call."""
    divisors = [3 if f == 17 and i % 2 else 1 << f for i, f in enumerate(fs)]
    element = st.one_of(st.sampled_from([0, 1, -1, 2**40 - 1, -(2**40) + 1]), st.integers(-(2**40) + 1, 2**40 - 1))
    values = [data.draw(st.lists(element, max_size=12)) for _ in fs]
    results = run_parties(lambda session: _truncated_values(session, values, divisors), REPLICATED)
    _check_truncated(values, divisors, results)


def test_short_return_in_blocks_with_mixed_divisors() -> None:
    """A pipelined call (blocks of ``PIPELINE_BLOCK``) whose blocks hold pieces of values truncated by 2^16,
    2^3 and 2^1: every element exact, as in one block."""
    count = 2 * arith.PIPELINE_BLOCK + 5
    generator = np.random.default_rng(7)  # public test data, not a share
    values = [generator.integers(-(2**40) + 1, 2**40, size).tolist() for size in (count, 9, 3)]
    divisors = [1 << 16, 1 << 3, 2]
    assert len(arith.pipelined_pieces([len(v) for v in values])[1]) > 1
    results = run_parties(lambda session: _truncated_values(session, values, divisors), REPLICATED)
    _check_truncated(values, divisors, results)


# -- costs ---------------------------------------------------------------------------------------------------
def _costs(session: smpc.Session, count: int) -> dict[str, dict[str, int]]:
    x = session.share(torch.linspace(-2, 2, count, dtype=torch.float64) if session.rank == 0 else None, owner=0)
    y = session.share(torch.linspace(1, 3, count, dtype=torch.float64) if session.rank == 1 else None, owner=1)
    matrix = session.share(torch.ones(count, 4, dtype=torch.float64) if session.rank == 2 else None, owner=2)
    cases: dict[str, Callable[[], Any]] = {
        "share": lambda: session.share(torch.ones(count) if session.rank == 0 else None, owner=0),
        "reveal": x.reveal, "mul unscaled": lambda: x.mul_unscaled(y), "mul": lambda: (x * y).settle(),
        "matmul": lambda: (x.reshape(1, count) @ matrix).settle(), "truncate": lambda: x.rescale(3),
        "compare": lambda: x < y,
    }
    measured = {}
    for name, case in cases.items():
        session.stats.reset()
        case()
        measured[name] = session.stats.as_dict()
    return measured


@pytest.mark.parametrize("count", [1, 500])
def test_rounds_and_bytes_per_party(count: int) -> None:
    """share: 1 round, the owner sends 8 k to each other party; reveal: 1 round, 8 k per party; a product
    without truncation: 1 round, 8 bytes per output element per party (matmul: the 1 x 4 output only);
    with the fused truncation: 2 rounds, party 0 sends only a correction (about 10 bytes for the divisor
    2^16: s and a 2-byte share of MSB(r)), parties 1 and 2 8 and a 2-byte lane back to replicated shares;
    a truncation of a replicated value: 2 rounds; a comparison: the helped two-party ltz (3 rounds,
    ``helped_ltz_bytes`` from each of parties 1 and 2, party 0's ``helped_ltz_dealer_bytes`` of material and
    answer) and 1 round back.  Frame headers counted per message."""
    results = run_parties(lambda session: _costs(session, count), REPLICATED)
    payload = {rank: {name: stats["bytes_sent"] - FRAME_OVERHEAD_BYTES * stats["messages"]
                      for name, stats in measured.items()} for rank, measured in enumerate(results)}
    rounds = {name: {measured[name]["rounds"] for measured in results} for name in results[0]}
    assert rounds == {"share": {1}, "reveal": {1}, "mul unscaled": {1}, "mul": {2}, "matmul": {2},
                      "truncate": {2}, "compare": {4}}
    assert [payload[r]["share"] for r in range(3)] == [16 * count, 0, 0]
    assert [payload[r]["reveal"] for r in range(3)] == [8 * count] * 3
    assert [payload[r]["mul unscaled"] for r in range(3)] == [8 * count] * 3
    def correction(n: int) -> int:  # s: n words; a 16-bit share of MSB(r) per element, four to a word
        return 8 * n + 8 * -(-n // 4)

    assert [payload[r]["mul"] for r in range(3)] == [correction(count)] * 3
    assert [payload[r]["matmul"] for r in range(3)] == [correction(4)] * 3
    # party 0 sends the comparison's dealer material and its answer; party 2 also
    # sends it the requests (kinds and shapes: a few hundred bytes whatever the count)
    assert payload[0]["compare"] == helped_ltz_dealer_bytes(count)
    assert payload[1]["compare"] == helped_ltz_bytes(count) + 8 * count
    assert 0 < payload[2]["compare"] - payload[1]["compare"] < 1000
    for measured in results:
        for stats in measured.values():
            assert stats["dealer_bytes_sent"] == stats["dealer_bytes_received"] == 0


def _peers_and_names(session: smpc.Session) -> dict[str, Any]:
    return {"peers": session.party.transport.peers, "protocol": session.protocol,
            "dealer_id_is_a_peer": session.party.dealer_id in session.party.transport.peers}


def test_no_dealer_takes_part() -> None:
    """A replicated session's transport links exactly the three parties: no dealer node, no dealer socket."""
    for rank, result in enumerate(run_parties(_peers_and_names, REPLICATED)):
        assert result["protocol"] == "replicated"
        assert set(result["peers"]) == {0, 1, 2} - {rank} and not result["dealer_id_is_a_peer"]


def test_replicated_needs_three_parties() -> None:
    with pytest.raises(ValueError, match="exactly 3 parties"):
        smpc.run_local(_peers_and_names, parties=2, transport="inproc", protocol="replicated")
    with pytest.raises(ValueError, match="truncates exactly|two parties"):
        smpc.SessionOptions(n_parties=3, protocol="replicated", truncation="local")


# -- views ---------------------------------------------------------------------------------------------------
INPUTS = {"a": torch.zeros(5_000, dtype=torch.float64),
          "b": torch.linspace(-3000.0, 3000.0, 5_000, dtype=torch.float64)}
CASES: dict[str, Callable[[smpc.SharedTensor], Any]] = {
    "mul": lambda x: (x * x).settle(),
    # two products: 2 x 1,250 words of lanes back to replicated shares, enough for the battery's 2,000
    "mul twice": lambda x: [(x * x).settle(), (x * (x + 1.0)).settle()],
    "matmul": lambda x: (x.reshape(50, 100) @ x.reshape(100, 50)).settle(),
    "truncate": lambda x: x.rescale(7),
    "compare": lambda x: x > 1.0,  # 5,000 elements: the tree of ``ltz``
    "helped compare": lambda x: [x[i * 1000 : (i + 1) * 1000] > 1.0 for i in range(3)],  # ``helped_ltz``
    "sigmoid": lambda x: (x * (1.0 / 400)).sigmoid(),
    "reciprocal": lambda x: (x.abs() + 1.0).reciprocal(positive=True),
}
#: Messages a party receives that are public by design: the kinds and shapes of helper requests, and the
#: end marker of a helper call (output shapes, the program counter).
PUBLIC = {"helper request"}
#: Messages of residues modulo ``helped.MODULUS`` (one byte each): the helper comparison's test values (party 0
#: receives them) and its shares of the mask's bits (party 2 receives them).
RESIDUES = {"helper comparison", "dealer helper comparison"}


def _views(case: str, values: torch.Tensor, session: smpc.Session) -> list[tuple[str, np.ndarray]]:
    x = session.share(values if session.rank == 1 else None, owner=1)
    recorder = RecordingTransport.around(session.party)
    try:
        CASES[case](x)
    finally:
        session.party.transport = recorder.inner
    return [(op, array) for _, _, op, array in recorder.received if op not in PUBLIC]


@pytest.fixture(scope="module", params=sorted(CASES))
def recorded(request: pytest.FixtureRequest) -> tuple[str, dict[str, list[list[tuple[str, np.ndarray]]]]]:
    case = request.param
    return case, {name: run_parties(lambda session, v=values: _views(case, v, session), REPLICATED)
                  for name, values in INPUTS.items()}


def _samples(views: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    pooled: dict[str, list[np.ndarray]] = {}
    for op, array in views:
        pooled.setdefault(op, []).append(np.asarray(array).reshape(-1))
    return {op: np.concatenate(arrays) for op, arrays in pooled.items()}


def test_every_party_sees_uniform_values(recorded: tuple[str, dict[str, Any]]) -> None:
    """Everything each party receives (shares, reshares, conversions, openings, helper corrections and the
    helper comparison's test values) is uniform: 64-bit words by bits and bytes, opened bits by their frequency,
    residues modulo 67 by their counts.  Significance ALPHA overall."""
    case, by_input = recorded
    checked = [(name, rank, op, value) for name, per_party in by_input.items()
               for rank, views in enumerate(per_party) for op, value in _samples(views).items() if value.size >= 2000]
    assert checked, case
    alpha = ALPHA / len(checked)
    failures = []
    for name, rank, op, value in checked:
        if op in RESIDUES:
            found = residue_failures(value, MODULUS, alpha)
        elif value.dtype == np.uint8:
            found = bit_failures(value, alpha)
        else:
            found = uniformity_failures(as_words(value), alpha)
        failures += [f"input {name}, party {rank}, {op} ({value.size}): {failure}" for failure in found]
    assert failures == []


def test_what_a_party_sees_does_not_depend_on_the_input(recorded: tuple[str, dict[str, Any]]) -> None:
    """Per party and kind of message, input a against input b: a two-sample chi-square of byte histograms for
    words (of counts for residues), a two-proportion test for bits.  Significance ALPHA overall."""
    case, by_input = recorded
    first = [_samples(views) for views in by_input["a"]]
    second = [_samples(views) for views in by_input["b"]]
    pairs = [(rank, op, first[rank][op], second[rank][op]) for rank in range(3) for op in first[rank]
             if first[rank][op].size >= 2000]
    assert pairs and all(set(first[r]) == set(second[r]) for r in range(3)), case
    alpha = ALPHA / len(pairs)
    failures = []
    for rank, op, one, other in pairs:
        if op in RESIDUES:
            statistic, critical = residue_homogeneity_statistic(one, other, MODULUS), chi_square_critical(
                MODULUS - 1, alpha)
        elif one.dtype == np.uint8:
            statistic, critical = two_proportion_statistic(one, other), normal_upper_quantile(alpha / 2)
        else:
            statistic, critical = homogeneity_statistic(as_words(one), as_words(other)), chi_square_critical(
                BYTE_DOF, alpha)
        if statistic >= critical:
            failures.append(f"party {rank}, {op}: {statistic:.1f} >= {critical:.1f}")
    assert failures == []


# -- remembered plans ----------------------------------------------------------------------------------------
def _helper_messages_per_call(session: smpc.Session) -> list[tuple[int, bool]]:
    """Party 2's messages to party 0 for each of four sigmoids of one shape, and whether each result is right."""
    x = session.share(torch.linspace(-9.0, 9.0, 200, dtype=torch.float64) if session.rank == 0 else None, owner=0)
    out = []
    for _ in range(4):
        before = session.party.transport.stats.messages_sent.get(0, 0)
        value = x.sigmoid().reveal()
        sent = session.party.transport.stats.messages_sent.get(0, 0) - before
        out.append((sent, bool((value - torch.sigmoid(torch.linspace(-9.0, 9.0, 200))).abs().max() < 3.3e-4)))
    return out


def test_a_repeated_call_sends_its_requests_to_party_0_as_one_plan() -> None:
    """The first sigmoid of a shape sends party 0 one request per correlated value, the end marker and its
    test values of the comparison (``helped_ltz``); every later one the same requests as one plan: 3 messages,
    with results as right as the first's.  (Party 2's part of the conversion back to replicated shares goes to
    party 1.)"""
    results = run_parties(_helper_messages_per_call, REPLICATED)
    sent = [count for count, _ in results[2]]
    assert sent[0] > 3 and sent[1:] == [3, 3, 3]
    assert all(right for party in results for _, right in party)


class _Varying:
    """An option every call sees as the same (equal, one hash), whose ``size`` and ``repeats`` the test changes
    between calls: a stand-in for a function whose requests depend on something its key does not hold."""

    size = 4
    repeats = 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Varying)

    def __hash__(self) -> int:
        return 0


def _compare_of_varying_size(party: Any, x: torch.Tensor, *, varying: _Varying) -> torch.Tensor:
    from protocols.additive.compare import ltz
    for _ in range(varying.repeats - 1):
        ltz(party, x.reshape(-1)[: varying.size])
    return ltz(party, x.reshape(-1)[: varying.size])


def _varying_calls(session: smpc.Session, calls: list[tuple[int, int]]) -> None:
    x = session.share(torch.linspace(-2.0, 2.0, 8, dtype=torch.float64) if session.rank == 0 else None, owner=0)
    varying = _Varying()
    for size, repeats in calls:
        varying.size, varying.repeats = size, repeats
        session.family.call(_compare_of_varying_size, x._parts, varying=varying)


@pytest.mark.parametrize(("calls", "message"), [
    ([(4, 1), (8, 1)], "comparison of shapes \\(8,\\).*plan made ahead of time has a helper comparison of shapes \\(4"),
    ([(8, 1), (4, 1)], "comparison of shapes \\(4,\\).*plan made ahead of time has a helper comparison of shapes \\(8"),
    ([(4, 2), (4, 1)], "PlanMismatch: this call asked party 0 for .* fewer than the same call did before"),
])
def test_a_call_that_asks_for_other_requests_than_remembered_fails_with_plan_mismatch(
        calls: list[tuple[int, int]], message: str) -> None:
    """Requests of other shapes than the same call's before, or fewer of them, raise PlanMismatch on party 2
    (and the session ends on every party), never a wrong value; more of them are asked for one by one."""
    with pytest.raises(smpc.PartyError, match=message):
        run_parties(lambda session: _varying_calls(session, calls), REPLICATED, recv_timeout=10.0, timeout=60.0)


def _more_requests_than_remembered(session: smpc.Session) -> list[bool]:
    x = session.share(torch.linspace(-2.0, 2.0, 8, dtype=torch.float64) if session.rank == 0 else None, owner=0)
    varying, right = _Varying(), []
    for repeats in (1, 3, 1):
        varying.size, varying.repeats = 8, repeats
        bits = session.family.call(_compare_of_varying_size, x._parts, varying=varying)
        opened = session.family.reveal(bits)
        assert opened is not None
        right.append(bool(torch.equal(opened, (torch.linspace(-2.0, 2.0, 8) < 0).to(torch.int64))))
    return right


def test_a_call_that_asks_for_more_requests_than_remembered_asks_for_the_rest_one_by_one() -> None:
    assert run_parties(_more_requests_than_remembered, REPLICATED) == [[True, True, True]] * 3
