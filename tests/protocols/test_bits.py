"""protocols.additive.bits on raw ring elements: the bits of every 64-bit word, exact, and the documented costs.

Expected values come from int64 torch: bit i of x is (x >> i) & 1 (arithmetic shift, so the sign's copies above
bit 63 never show).  The replicated family runs the functions in its helper sub-session, so each is checked
through additive 0/1 shares of its bits (``xor_bit_to_additive``), which every family can reveal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from network.local import FRAME_OVERHEAD_BYTES
from protocols.additive.bits import WORD_BITS, bit_decompose, or_from_top, scan_levels
from protocols.additive.compare import xor_bit_to_additive
from protocols.party import Party
from tests.support.checks import DEALER_PARTIES, PARTIES
from tests.support.harness import run_parties
from tests.support.strategies import SHAPES

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
RING_EXTREMES = (INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX, (1 << 31) - 1, -(1 << 31), 1 << 32)
#: Widths where the borrow scan changes its number of levels (and the full word).
WIDTHS = (1, 2, 3, 5, 17, 31, 32, 33, 63, 64)


def plain_bits(words: torch.Tensor, width: int = WORD_BITS) -> torch.Tensor:
    """int64 0/1 of bit i (i = 0..63, on a new first axis) of each word, 0 from ``width`` up."""
    positions = torch.arange(WORD_BITS).reshape(-1, *([1] * words.dim()))
    bits = (words.unsqueeze(0) >> positions) & 1
    return torch.where(positions < width, bits, 0)


def additive_bits(party: Party, words: torch.Tensor) -> torch.Tensor:
    """Additive 0/1 shares of all 64 bits of XOR-shared words (on a new first axis)."""
    positions = torch.arange(WORD_BITS, device=words.device).reshape(-1, *([1] * words.dim()))
    return xor_bit_to_additive(party, (words.unsqueeze(0) >> positions) & 1)


def decomposed(party: Party, x: torch.Tensor, width: int) -> torch.Tensor:
    return additive_bits(party, bit_decompose(party, x, width))


def ored_from_top(party: Party, x: torch.Tensor, width: int) -> torch.Tensor:
    return additive_bits(party, or_from_top(party, bit_decompose(party, x, width), width))


def ring_words() -> st.SearchStrategy[int]:
    """64-bit ring elements, the extremes (and powers of two and their neighbours) drawn often."""
    powers = st.integers(0, 63).flatmap(lambda k: st.sampled_from([(1 << k) - 1, -(1 << k), -(1 << k) + 1]))
    return st.one_of(st.sampled_from(RING_EXTREMES), powers, st.integers(INT64_MIN, INT64_MAX))


def evaluate(values: torch.Tensor, width: int, n_parties: int) -> dict[str, torch.Tensor]:
    """Share ``values`` from the last party; reveal the bits of bit_decompose and of or_from_top."""
    owner = n_parties - 1

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        family = session.family
        shares = family.share(values if session.rank == owner else None, owner)
        return {"bits": family.reveal(family.call(decomposed, shares, width=width)),
                "or": family.reveal(family.call(ored_from_top, shares, width=width))}

    results = run_parties(program, n_parties)
    for rank, other in enumerate(results[1:], start=1):
        for name, value in results[0].items():
            assert torch.equal(other[name], value), f"party {rank} opened different {name}"
    return results[0]


@PARTIES
@given(data=st.data())
def test_bit_decompose_gives_the_bits_of_every_ring_element(n_parties: int, data: st.DataObject) -> None:
    """bit_decompose of any 64-bit words (negatives, 0, -2^63, 2^63 - 1, powers of two and their neighbours)
    to any width: exactly the word's low bits, 0 above; or_from_top: bit t is the OR of bits t..width-1."""
    shape = data.draw(SHAPES, label="shape")
    values = data.draw(hnp.arrays(np.int64, shape, elements=ring_words()).map(torch.from_numpy), label="values")
    width = data.draw(st.one_of(st.sampled_from(WIDTHS), st.integers(1, WORD_BITS)), label="width")
    got = evaluate(values, width, n_parties)
    bits = plain_bits(values, width)
    assert torch.equal(got["bits"], bits)
    # OR of bits t..width-1: a reversed cumulative maximum along the bit axis.
    assert torch.equal(got["or"], bits.flip(0).cummax(0).values.flip(0))


@PARTIES
def test_bit_decompose_on_the_ring_extremes_at_full_width(n_parties: int) -> None:
    """Every extreme (and 2,000 uniform words) at the full 64 bits: the sign bit of -2^63 and -1 included."""
    rng = np.random.default_rng(20250114)
    words = rng.integers(INT64_MIN, INT64_MAX, size=2000, dtype=np.int64, endpoint=True)
    values = torch.cat([torch.tensor(RING_EXTREMES, dtype=torch.int64), torch.from_numpy(words)])
    got = evaluate(values, WORD_BITS, n_parties)
    assert torch.equal(got["bits"], plain_bits(values))


@DEALER_PARTIES
@pytest.mark.parametrize("width", [2, 32, 64])
def test_costs_as_documented(n_parties: int, width: int) -> None:
    """bit_decompose: 1 + L rounds (L = ceil(log2(width - 1))), (8 + 24 (L-1) + 16) (n-1) bytes per element
    (8 (n-1) when L = 0), 16 L bytes per element from the dealer (8 when L = 0); or_from_top: ceil(log2 width)
    rounds of 16 (n-1) bytes per element, 8 per element and round from the dealer; plus 114 header bytes per
    message.  Only the last party hears from the dealer."""
    count = 300
    values = torch.arange(count, dtype=torch.int64) * 7919 - 1000

    def program(session: smpc.Session) -> dict[str, dict[str, int]]:
        party = session.party
        shares = session.family.share(values if session.rank == 0 else None, 0)[0]
        session.stats.reset()
        words = bit_decompose(party, shares, width)
        decompose = session.stats.as_dict()
        session.stats.reset()
        or_from_top(party, words, width)
        return {"decompose": decompose, "or": session.stats.as_dict()}

    levels, or_levels = scan_levels(width - 1), scan_levels(width)
    costs = {  # name: (rounds, bytes per element and other party, dealer requests, dealer bytes per element)
        "decompose": (1 + levels, 8 + (24 * levels - 8 if levels else 0), 1 + levels, 16 * levels or 8),
        "or": (or_levels, 16 * or_levels, or_levels, 8 * or_levels),
    }
    others = n_parties - 1
    for rank, measured in enumerate(run_parties(program, n_parties)):
        for name, (rounds, payload, requests, dealer_payload) in costs.items():
            stats = measured[name]
            assert (stats["rounds"], stats["messages"]) == (rounds, rounds * others), (rank, name, stats)
            assert stats["bytes_sent"] == payload * others * count + FRAME_OVERHEAD_BYTES * stats["messages"], (
                rank, name, stats)
            dealer = dealer_payload * count + FRAME_OVERHEAD_BYTES * requests if rank == n_parties - 1 else 0
            assert stats["dealer_bytes_received"] == dealer, (rank, name, stats)


def test_width_outside_the_word_is_refused() -> None:
    """A width of 0 or above 64 is a ValueError before any communication."""
    def program(session: smpc.Session) -> list[str]:
        outcomes = []
        for width in (0, 65):
            before = session.party.rounds
            try:
                bit_decompose(session.party, torch.zeros(3, dtype=torch.int64), width)
                outcomes.append("no error")
            except ValueError:
                outcomes.append(f"ValueError after {session.party.rounds - before} rounds")
        return outcomes

    assert run_parties(program, 2) == [["ValueError after 0 rounds"] * 2] * 2
