"""protocols.additive.truncation: the dealer method is exact within one unit on the whole fixed-point bound (also
through the correction of a masked sum that wrapped); the two-party local shift works within its budget and is
refused beyond it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
import smpc
from fixedpoint import FixedPoint
from network import LocalNetwork
from protocols.prg import AesCtrPrg, new_key
from tests.support.harness import run_parties, share_from

#: Divisors checked in every run: None means the default 2^frac_bits.
FIXED_DIVISORS: tuple[int | None, ...] = (None, 2, 3, 1000)


def bound_values(product_bits: int) -> st.SearchStrategy[list[int]]:
    """Raw ring values anywhere in |x| < 2^product_bits, the extremes always included."""
    limit = (1 << product_bits) - 1
    drawn = st.lists(st.integers(-limit, limit), min_size=1, max_size=60)
    return drawn.map(lambda values: values + [limit, -limit, 0, 1, -1])


def truncate_on_parties(values: Sequence[int], divisors: Sequence[int | None], n_parties: int, **options: Any
                        ) -> list[tuple[list[int], int]]:
    """Share the raw int64 ``values`` from party 0, truncate them by each divisor, reveal.  Returns, per
    divisor, the opened results and the rounds the truncation took (from party 0; all parties must agree)."""
    raw = torch.tensor(values, dtype=torch.int64)

    def program(session: smpc.Session) -> list[tuple[list[int], int]]:
        party = session.party
        shares = protocols.share(party, raw if party.rank == 0 else None, owner=0)
        outcome = []
        for divisor in divisors:
            before = party.rounds
            result = protocols.truncate(party, shares, divisor)
            rounds = party.rounds - before
            outcome.append((protocols.reveal(party, result).tolist(), rounds))
        return outcome

    results = run_parties(program, n_parties, **options)
    assert all(other == results[0] for other in results[1:]), "parties opened different results"
    return results[0]


def assert_within_one_unit(values: Sequence[int], results: Sequence[int], divisor: int) -> None:
    """|result - x/d| < 1 for every element, in exact integer arithmetic: |result*d - x| < d."""
    misses = [(x, r) for x, r in zip(values, results) if not abs(r * divisor - x) < divisor]
    assert not misses, f"divisor {divisor}: (x, result) off by one unit or more: {misses[:5]}"


@pytest.mark.parametrize("n_parties", [2, 3])
@given(values=bound_values(FixedPoint().product_bits),
       extra_divisor=st.integers(2, 1 << 40))
def test_dealer_truncation_is_within_one_unit(n_parties: int, values: list[int], extra_divisor: int) -> None:
    """Dealer truncation of any |x| < 2^product_bits by 2^frac_bits, 2, 3, 1000 and a drawn divisor is within
    one unit of x/d (exactly floor or floor + 1, never more)."""
    divisors = (*FIXED_DIVISORS, extra_divisor)
    outcome = truncate_on_parties(values, divisors, n_parties)
    for divisor, (results, _) in zip(divisors, outcome):
        assert_within_one_unit(values, results, divisor or FixedPoint().scale)


@pytest.mark.parametrize("n_parties", [2, 3])
@settings(max_examples=5)
@given(values=st.lists(st.integers(-(1 << 61) + 1, (1 << 61) - 1), min_size=200, max_size=200))
def test_wide_products_stay_exact_in_one_round(n_parties: int, values: list[int]) -> None:
    """With frac_bits=16, int_bits=29 (product_bits 61) the masked sum x' + r wraps around the ring for about
    x'/2^64 (up to 1/4) of the elements, and the wrap correction must take them: every truncation takes exactly
    one round and every result stays within one unit."""
    encoding = FixedPoint(frac_bits=16, int_bits=29)
    assert encoding.product_bits == 61
    values = values + [(1 << 61) - 1, -(1 << 61) + 1]
    outcome = truncate_on_parties(values, FIXED_DIVISORS, n_parties, frac_bits=16, int_bits=29)
    for divisor, (results, rounds) in zip(FIXED_DIVISORS, outcome):
        assert rounds == 1, f"divisor {divisor}: {rounds} rounds"
        assert_within_one_unit(values, results, divisor or encoding.scale)


@given(shifted=st.integers(0, (1 << 62) - 1), below=st.integers(1, 1 << 62), divisor=st.integers(2, 1 << 40))
def test_wrap_correction_algebra(shifted: int, below: int, divisor: int) -> None:
    """The dealer's (s, u) and the public rule floor(c/d) - s + [c < T] u give floor(x'/d) or that + 1, also
    for a mask r chosen to make x' + r wrap (r = 2^64 - below, MSB set), and for masks that do not wrap."""
    threshold = 1 << 62
    for r in ((1 << 64) - below, below - 1, (1 << 63) + below):
        mask = torch.tensor([r - (1 << 64) if r >= 1 << 63 else r], dtype=torch.int64)
        s, u = protocols.additive.dealer.truncation_values(mask, divisor)
        c = (shifted + r) % (1 << 64)
        result = (c // divisor - int(s) + (int(u) if c < threshold else 0)) % (1 << 64)
        assert result - shifted // divisor in (0, 1), (shifted, r, divisor)


@given(words=st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=1, max_size=20),
       bits=st.integers(1, 63), also=st.integers(3, 1 << 40))
def test_pair_values_match_their_definition(words: list[int], bits: int, also: int) -> None:
    """(s, u) = (floor(r/d), MSB(r) (s + ceil((2^64 - r)/d))) mod 2^64, in Python integers, for the shortcut of
    a power-of-two d (two shifts) and for any other d, with the extremes of r."""
    words = words + [0, 1, -1, -(1 << 63), (1 << 63) - 1]
    mask = torch.tensor(words, dtype=torch.int64)
    for divisor in (1 << bits, also):
        s, u = protocols.additive.dealer.truncation_values(mask, divisor)
        for word, s_i, u_i in zip(words, s.tolist(), u.tolist()):
            r = word % (1 << 64)
            floor = r // divisor
            ceil_complement = -(-((1 << 64) - r) // divisor)
            assert s_i % (1 << 64) == floor, (word, divisor)
            assert u_i % (1 << 64) == ((r >> 63) * (floor + ceil_complement)) % (1 << 64), (word, divisor)


def test_divisor_one_and_empty_need_no_round() -> None:
    """Dividing by 1, or an empty tensor, returns the shares unchanged without a round; divisor < 1 is refused."""
    def program(session: smpc.Session) -> tuple[Any, ...]:
        party = session.party
        shares = torch.tensor([5, -7], dtype=torch.int64) * (party.rank + 1)
        before = party.rounds
        same = protocols.truncate(party, shares, 1)
        empty = protocols.truncate(party, torch.zeros(0, dtype=torch.int64))
        rounds = party.rounds - before
        try:
            protocols.truncate(party, shares, 0)
            refused = False
        except ValueError:
            refused = True
        return torch.equal(same, shares), empty.shape, rounds, refused

    for unchanged, empty_shape, rounds, refused in run_parties(program, 2):
        assert unchanged and empty_shape == (0,) and rounds == 0 and refused


# -- two-party local shift -------------------------------------------------------------------------------
LOCAL = {"truncation": "local", "failure_budget": 1.0}


@given(values=st.lists(st.integers(-(1 << 32), 1 << 32), min_size=1, max_size=64))
def test_local_shift_is_within_one_unit_for_small_values(values: list[int]) -> None:
    """Two-party local shift of |x| <= 2^32 by 2^16 and 2 is within one unit, with no communication
    (a wrong element has probability about 2^-31 here)."""
    divisors = (None, 2)
    outcome = truncate_on_parties(values, divisors, 2, **LOCAL)
    for divisor, (results, rounds) in zip(divisors, outcome):
        assert rounds == 0
        assert_within_one_unit(values, results, divisor or FixedPoint().scale)


@given(x=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=32), data=st.data())
def test_local_shift_products(x: list[float], data: st.DataObject) -> None:
    """x * y of small shared values in a local-shift session meets |x| e + |y| e + e^2 + 2^-f."""
    tx = torch.tensor(x, dtype=torch.float64)
    ty = torch.tensor(data.draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=len(x), max_size=len(x))),
                      dtype=torch.float64)

    def program(session: smpc.Session) -> torch.Tensor:
        sx, sy = share_from(session, [tx, ty])
        return (sx * sy).reveal()

    e, u = 2.0**-17, 2.0**-16
    bound = tx.abs() * e + ty.abs() * e + e * e + u + 1e-12
    for got in run_parties(program, 2, **LOCAL):
        assert bool(((got - tx * ty).abs() <= bound).all())


def test_local_shift_refuses_non_powers_of_two() -> None:
    """The local shift divides by powers of two only; anything else is a ValueError naming the alternative."""
    def program(session: smpc.Session) -> str:
        try:
            protocols.truncate(session.party, torch.ones(3, dtype=torch.int64), 3)
        except ValueError as error:
            return str(error)
        return "no error"

    for message in run_parties(program, 2, **LOCAL):
        assert "truncation='dealer'" in message


def test_local_shift_over_the_default_budget_is_refused() -> None:
    """With the default failure budget (1e-6) a single local-shift truncation (2^-16 expected failures per
    element) raises TruncationBudgetError, whose message gives the numbers and what to do instead."""
    assert smpc.TruncationBudgetError is protocols.TruncationBudgetError

    def program(session: smpc.Session) -> tuple[type, str]:
        sx, sy = share_from(session, [torch.tensor([1.5]), torch.tensor([2.0])])
        try:
            (sx * sy).reveal()
        except protocols.TruncationBudgetError as error:
            return type(error), str(error)
        return type(None), "no error"

    for kind, message in run_parties(program, 2, truncation="local"):
        assert kind is smpc.TruncationBudgetError
        assert "budget" in message and "truncation='dealer'" in message and "int_bits" in message


def test_local_shift_with_three_parties_is_refused() -> None:
    """truncation='local' is refused with ValueError for three parties: by Party itself, and before a run starts."""
    network = LocalNetwork(4)
    with pytest.raises(ValueError, match="two parties"):
        protocols.Party(rank=0, n_parties=3, transport=network.transport(0), encoding=FixedPoint(),
                        dealer_prg=AesCtrPrg(new_key()), pair_prgs={}, truncation="local")

    def program(session: smpc.Session) -> None:
        raise AssertionError("a three-party local-shift session must not start")

    # run_local checks the options before any party starts, so the refusal is a plain ValueError.
    with pytest.raises(ValueError, match="two parties"):
        run_parties(program, 3, truncation="local", failure_budget=1.0)
