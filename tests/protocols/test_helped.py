"""The helper's three-round comparison (``protocols.additive.helped``): exact against plain torch, its zero test
position by position, the helper's refusals, and where the replicated family uses it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from network import ProtocolError
from protocols.additive.compare import ltz
from protocols.additive.helped import LOW_BITS, MODULUS, POSITIONS, helper_verdict, position_values
from protocols.replicated.helper import HELPED_COMPARE_MAX
from tests.support.harness import REPLICATED, run_parties

EDGES = [0, 1, -1, 2**63 - 1, -(2**63), 2**62, -(2**62), 65536, -65536, 2**31, -(2**31) - 1]
WORDS = st.integers(-(2**63), 2**63 - 1)


def _compare(session: smpc.Session, words: list[int]) -> tuple[torch.Tensor, int]:
    parts = session.family.share(torch.tensor(words, dtype=torch.int64) if session.rank == 0 else None, 0)
    before = session.stats.rounds
    bits = session.family.call(ltz, parts)
    rounds = session.stats.rounds - before
    opened = session.family.reveal(bits)
    assert opened is not None
    return opened, rounds


@given(st.lists(WORDS, min_size=1, max_size=40))
def test_matches_torch_for_every_ring_element(words: list[int]) -> None:
    """[x < 0] for any int64 ring elements (the edges included), as torch computes it, in 3 rounds plus 1 back
    to replicated shares."""
    words = words + EDGES
    results = run_parties(lambda session: _compare(session, words), REPLICATED)
    expected = (torch.tensor(words, dtype=torch.int64) < 0).to(torch.int64)
    for opened, rounds in results:
        assert torch.equal(opened, expected) and rounds == 4


def test_above_the_limit_the_tree_decides() -> None:
    """One element more than ``HELPED_COMPARE_MAX``: the 8-round tree, the same exact bits."""
    words = list(range(-(HELPED_COMPARE_MAX // 2), HELPED_COMPARE_MAX // 2 + 1))
    opened, rounds = run_parties(lambda session: _compare(session, words), REPLICATED)[0]
    assert len(words) == HELPED_COMPARE_MAX + 1 and rounds == 9
    assert torch.equal(opened, (torch.tensor(words) < 0).to(torch.int64))


def _split(bits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    first = rng.integers(0, MODULUS, size=bits.shape)
    return first, (bits - first) % MODULUS


@pytest.mark.parametrize("flip", [0, 1])
def test_one_zero_exactly_where_the_comparison_says(flip: int) -> None:
    """Step 3 on chosen masks r and opened values c (equal low bits, neighbours, extremes): the two parties'
    test values add up, mod p, to a vector with one 0 when (flip 0) r' > c' or (flip 1) c' >= r', none
    otherwise, for random shares of r's bits."""
    rng = np.random.default_rng(0)  # test data, not a secret
    low = 2**63 - 1
    pairs = [(5, 5), (5, 4), (4, 5), (0, 0), (0, low), (low, 0), (low, low), (low - 1, low), (2**62, 2**62 - 1)]
    pairs += [(int(a), int(b)) for a, b in rng.integers(0, 2**63, size=(40, 2), dtype=np.int64)]
    r = np.array([a for a, _ in pairs], dtype=np.int64)
    c = torch.tensor([b for _, b in pairs], dtype=torch.int64)
    bits = ((r.reshape(-1, 1) >> np.arange(LOW_BITS)) & 1).astype(np.int64)
    coins = torch.full((len(pairs), 1), flip, dtype=torch.int32)
    shares = _split(bits, rng)
    tests = (position_values(c, shares[0], coins, True) + position_values(c, shares[1], coins, False)) % MODULUS
    assert tests.shape == (len(pairs), POSITIONS)
    zeros = (tests == 0).sum(1).tolist()
    for (mask, opened), count in zip(pairs, zeros):
        expected = opened >= mask if flip else mask > opened
        assert count == int(expected), (mask, opened, flip)


def _verdict_inputs(count: int) -> dict[str, Any]:
    values = np.zeros((count, POSITIONS), dtype=np.uint8)
    return {"first": values, "second": values.copy(), "r": torch.zeros(count, dtype=torch.int64),
            "g": torch.zeros(count, dtype=torch.int64)}


@pytest.mark.parametrize(("change", "message"), [
    ({"first": np.zeros((3, POSITIONS), dtype=np.int16)}, "expected 3 x 64 bytes"),
    ({"second": np.zeros((3, POSITIONS - 1), dtype=np.uint8)}, "expected 3 x 64 bytes"),
    ({"second": np.full((3, POSITIONS), MODULUS, dtype=np.uint8)}, "outside 0..66"),
])
def test_the_helper_refuses_malformed_test_values(change: dict[str, Any], message: str) -> None:
    """Test values of another dtype or shape, or not residues mod p, are a ProtocolError at the helper."""
    with pytest.raises(ProtocolError, match=message):
        helper_verdict(**(_verdict_inputs(3) | change))


def test_the_helper_learns_the_masked_bit_and_answers_its_share() -> None:
    """A 0 (or p) in a row's sum sets beta'; party 1's share is beta' ^ r_63 - g."""
    inputs = _verdict_inputs(3)
    inputs["first"][1, 7], inputs["second"][1, 7] = 30, MODULUS - 30
    inputs["first"][2] = inputs["second"][2] = 1
    inputs["r"] = torch.tensor([-1, 0, -1], dtype=torch.int64)
    inputs["g"] = torch.tensor([5, 6, 7], dtype=torch.int64)
    verdict, share = helper_verdict(**inputs)
    assert verdict.tolist() == [1, 1, 0]
    assert share.tolist() == [(1 ^ 1) - 5, (1 ^ 0) - 6, (0 ^ 1) - 7]


def _two_in_a_row(party: Any, x: torch.Tensor) -> torch.Tensor:
    """Two comparisons one after the other in one call (module level, so that party 2 remembers its plan)."""
    return ltz(party, x) + 2 * ltz(party, -x)


def _repeated_calls(session: smpc.Session) -> list[torch.Tensor]:
    words = torch.tensor([-3, -1, 0, 1, 5, 2**62], dtype=torch.int64)
    parts = session.family.share(words if session.rank == 0 else None, 0)
    out = []
    for _ in range(3):  # the second and third calls send their requests to party 0 as one plan
        opened = session.family.reveal(session.family.call(_two_in_a_row, parts))
        assert opened is not None
        out.append(opened)
    return out


def test_a_plan_with_two_comparisons_is_answered_in_order() -> None:
    """Party 0 sends a plan's corrections first, then answers its comparisons in order: every repetition of a
    call with two comparisons gives [x < 0] + 2 [x > 0] exactly, and nothing waits forever."""
    expected = torch.tensor([1, 1, 0, 2, 2, 2], dtype=torch.int64)
    for results in run_parties(_repeated_calls, REPLICATED):
        assert all(torch.equal(result, expected) for result in results)
