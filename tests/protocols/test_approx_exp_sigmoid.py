"""protocols.approx.exp and protocols.approx.sigmoid: exp, sigmoid and tanh against float64 torch, for 2 and 3
parties, with the bounds, edges, rounds and bytes their docstrings state.

Expected values are float64 torch of the drawn float inputs (so the input's encoding error counts against the
function, as the docstrings say).  Exactness claims (saturated constants) are checked on the encoded input,
since that is what the parties compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import protocols
import protocols.additive.truncation
import smpc
from fixedpoint import FixedPoint
from network.local import FRAME_OVERHEAD_BYTES
from protocols.additive.compare import ltz_bytes
from protocols.approx.exp import (
    BOUNDED_HIGH_FRAC_BITS,
    EXP_DOMAIN_LOW,
    EXP_SATURATION_UNITS,
    EXP_TABLE,
    EXP_TOP,
    TABLE_FRAC_BITS,
    PiecewisePolynomial,
    exp,
)
from protocols.approx.sigmoid import SIGMOID_TABLE, TANH_TABLE, sigmoid, tanh
from tests.support.checks import DEALER_PARTIES, FLOAT_SLACK, PARTIES
from tests.support.harness import run_parties

UNIT = 2.0**-16
ENCODING = FixedPoint()
#: Largest encodable magnitude with the default encoding (|v| < 2^15).
LARGEST = 2.0**15 - UNIT
LN_RANGE = math.log(2.0**15)
EXP_SATURATION = EXP_SATURATION_UNITS * UNIT
EXP_FLOOR = EXP_TABLE.breaks[0]

# Documented bounds (the guaranteed ones, not the measured ones).
EXP_RELATIVE_BOUND = 8.4e-4
EXP_SATURATION_RELATIVE_BOUND = 5e-4
EXP_ABSOLUTE_BELOW_BOUND = 1.7 * UNIT
SIGMOID_BOUND = 3.2e-4
TANH_BOUND = 6.1e-4

#: Rounds per call (dealer truncation) and payload bytes per element and per other party.
EXP_ROUNDS, BOUNDED_ROUNDS = 14, 13


def exp_bytes(count: int) -> int:
    """exp's payload per other party: one ltz on its 11 comparisons, then 144 bytes per element."""
    return ltz_bytes(11 * count) + 144 * count


def bounded_bytes(count: int) -> int:
    """sigmoid's and tanh's: one ltz on 5 comparisons, then 136 bytes per element."""
    return ltz_bytes(5 * count) + 136 * count

Function = Callable[[protocols.Party, torch.Tensor], torch.Tensor]


def breakpoint_neighbours(table: PiecewisePolynomial) -> list[float]:
    """Every breakpoint and the encodable values one unit either side."""
    return [b + d * UNIT for b in table.breaks for d in (-1, 0, 1)]


#: Inputs every run includes: zero and the tiniest values, the extremes of the range, and the breakpoints.
COMMON_EDGES = [0.0, UNIT, -UNIT, UNIT / 2, -UNIT / 2, 1.0, -1.0, LARGEST, -LARGEST, 2.0**15 - 1, 1 - 2.0**15]
EXP_EDGES = COMMON_EDGES + breakpoint_neighbours(EXP_TABLE) + [
    EXP_DOMAIN_LOW, EXP_DOMAIN_LOW - UNIT, EXP_DOMAIN_LOW + UNIT, LN_RANGE, LN_RANGE - UNIT, LN_RANGE + UNIT, 11.0]
SIGMOID_EDGES = COMMON_EDGES + breakpoint_neighbours(SIGMOID_TABLE) + [100.0, -100.0]
TANH_EDGES = COMMON_EDGES + breakpoint_neighbours(TANH_TABLE) + [100.0, -100.0]


# -- running ---------------------------------------------------------------------------------------------
def evaluate(function: Function, values: torch.Tensor, n_parties: int, **options: Any) -> torch.Tensor:
    """Share float64 ``values`` from the last party, apply ``function`` on every party, reveal; every party
    must open the same result.  Returns the decoded float64 result."""
    owner = n_parties - 1

    def program(session: smpc.Session) -> torch.Tensor:
        family = session.family  # either protocol family: the replicated one runs ``function`` for two parties
        encoded = session.encoding.encode(values) if session.rank == owner else None
        result = family.call(function, family.share(encoded, owner))
        assert all(part.dtype == torch.int64 for part in result)
        return session.encoding.decode(family.reveal(result))

    results = run_parties(program, n_parties, **options)
    for rank, other in enumerate(results[1:], start=1):
        assert torch.equal(other, results[0]), f"party {rank} opened a different result"
    return results[0]


def encoded(values: torch.Tensor) -> torch.Tensor:
    """The values the parties actually hold."""
    return ENCODING.decode(ENCODING.encode(values))


def misses(mask: torch.Tensor, error: torch.Tensor, bound: Any, what: str, inputs: torch.Tensor) -> list[str]:
    """A message for the worst element of ``mask`` whose error exceeds ``bound`` (none if all are within)."""
    bound = torch.as_tensor(bound, dtype=torch.float64).expand_as(error)
    over = mask & (error > bound + FLOAT_SLACK)
    if not bool(over.any()):
        return []
    worst = int(torch.where(over, error - bound, torch.full_like(error, -math.inf)).argmax())
    return [f"{what}: x = {float(inputs[worst])!r}, error {float(error[worst]):.3g} > {float(bound[worst]):.3g}"]


# -- checks against the documented bounds ------------------------------------------------------------------
def check_exp(inputs: torch.Tensor, result: torch.Tensor) -> None:
    """exp's documented behaviour on every element (relative bound on the domain, absolute below it, exact
    zero far below, exact saturation at the top, nothing negative or above the saturation value)."""
    held = encoded(inputs)
    want = torch.exp(inputs)
    error = (result - want).abs()
    domain = (inputs >= EXP_DOMAIN_LOW) & (inputs < LN_RANGE)
    below = inputs < EXP_DOMAIN_LOW
    problems = misses(domain & (held < EXP_TOP), error, EXP_RELATIVE_BOUND * want, "relative, domain", inputs)
    problems += misses(domain & (held >= EXP_TOP), error, EXP_SATURATION_RELATIVE_BOUND * want,
                       "relative, saturated", inputs)
    problems += misses(below & (held >= EXP_FLOOR), error, EXP_ABSOLUTE_BELOW_BOUND, "absolute, below", inputs)
    if not bool((result[held < EXP_FLOOR] == 0).all()):
        problems.append("not exactly 0 below the lowest breakpoint")
    if not bool((result[held >= EXP_TOP] == EXP_SATURATION).all()):
        problems.append("not exactly the saturation value at the top")
    if not bool(((result >= 0) & (result <= EXP_SATURATION)).all()):
        problems.append(f"outside [0, saturation]: {result[(result < 0) | (result > EXP_SATURATION)][:5]}")
    assert not problems, "; ".join(problems)


def check_bounded(inputs: torch.Tensor, result: torch.Tensor, reference: Callable[[torch.Tensor], torch.Tensor],
                  table: PiecewisePolynomial, bound: float, low: float) -> None:
    """sigmoid / tanh: absolute error within ``bound`` everywhere, exact constants beyond the outer
    breakpoints, every result within [low, 1]."""
    held = encoded(inputs)
    error = (result - reference(inputs)).abs()
    problems = misses(torch.ones_like(error, dtype=torch.bool), error, bound, "absolute", inputs)
    if not bool((result[held < table.breaks[0]] == low).all()):
        problems.append(f"not exactly {low} below {table.breaks[0]}")
    if not bool((result[held >= table.breaks[-1]] == 1).all()):
        problems.append(f"not exactly 1 at and above {table.breaks[-1]}")
    if not bool(((result >= low) & (result <= 1)).all()):
        problems.append(f"outside [{low}, 1]")
    assert not problems, "; ".join(problems)


def check_sigmoid(inputs: torch.Tensor, result: torch.Tensor) -> None:
    check_bounded(inputs, result, torch.sigmoid, SIGMOID_TABLE, SIGMOID_BOUND, 0.0)


def check_tanh(inputs: torch.Tensor, result: torch.Tensor) -> None:
    check_bounded(inputs, result, torch.tanh, TANH_TABLE, TANH_BOUND, -1.0)


# -- strategies ------------------------------------------------------------------------------------------
def floats_in(low: float, high: float, count: int) -> st.SearchStrategy[torch.Tensor]:
    """``count`` float64 values in [low, high]."""
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False)
    return hnp.arrays(np.float64, count, elements=elements).map(torch.from_numpy)


def batch(data: st.DataObject, inner: tuple[float, float], edges: list[float]) -> torch.Tensor:
    """One run's inputs: 300 drawn inside ``inner``, 100 across the whole range, and the edges."""
    parts = [data.draw(floats_in(*inner, 300), label="inside"),
             data.draw(floats_in(-LARGEST, LARGEST, 100), label="anywhere"),
             torch.tensor(edges, dtype=torch.float64)]
    return torch.cat(parts)


# -- property tests --------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_exp_meets_its_bounds(n_parties: int, data: st.DataObject) -> None:
    """exp on drawn values of its domain [-3.5, ln 2^15), below it, anywhere, and at every edge."""
    inputs = torch.cat([batch(data, (EXP_DOMAIN_LOW, LN_RANGE), EXP_EDGES),
                        data.draw(floats_in(-20.0, EXP_DOMAIN_LOW, 100), label="below")])
    check_exp(inputs, evaluate(exp, inputs, n_parties))


@PARTIES
@given(data=st.data())
def test_sigmoid_meets_its_bound(n_parties: int, data: st.DataObject) -> None:
    """sigmoid within 3.2e-4 of float64 on drawn values near its pieces, anywhere, and at every edge."""
    inputs = batch(data, (-10.0, 10.0), SIGMOID_EDGES)
    check_sigmoid(inputs, evaluate(sigmoid, inputs, n_parties))


@PARTIES
@given(data=st.data())
def test_tanh_meets_its_bound(n_parties: int, data: st.DataObject) -> None:
    """tanh within 6.1e-4 of float64 on drawn values near its pieces, anywhere, and at every edge."""
    inputs = batch(data, (-6.0, 6.0), TANH_EDGES)
    check_tanh(inputs, evaluate(tanh, inputs, n_parties))


@PARTIES
@given(data=st.data())
def test_shapes_are_kept(n_parties: int, data: st.DataObject) -> None:
    """Any shape (scalars and empty tensors included) comes back as it went in, for all three functions."""
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), label="shape")
    values = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-12.0, 12.0)), label="values")
    inputs = torch.from_numpy(values)

    def all_three(party: protocols.Party, x: torch.Tensor) -> torch.Tensor:
        results = [exp(party, x), sigmoid(party, x), tanh(party, x)]
        assert all(result.shape == x.shape for result in results)
        return torch.stack(results)

    result = evaluate(all_three, inputs, n_parties)
    assert result.shape == (3, *inputs.shape)
    flat = inputs.reshape(-1)
    check_exp(flat, result[0].reshape(-1))
    check_sigmoid(flat, result[1].reshape(-1))
    check_tanh(flat, result[2].reshape(-1))


# -- dense grids -----------------------------------------------------------------------------------------
@PARTIES
def test_dense_grids(n_parties: int) -> None:
    """5,000 evenly spaced points over each function's interesting interval (plus 1,000 across the whole
    range), in one run per function: every documented bound holds (the docstrings quote the measured
    maxima of 20,000-point grids)."""
    wide = torch.linspace(-LARGEST, LARGEST, 1000, dtype=torch.float64)
    cases = {
        "exp": (exp, check_exp, torch.linspace(-12.0, 10.5, 5000, dtype=torch.float64)),
        "sigmoid": (sigmoid, check_sigmoid, torch.linspace(-10.0, 10.0, 5000, dtype=torch.float64)),
        "tanh": (tanh, check_tanh, torch.linspace(-6.0, 6.0, 5000, dtype=torch.float64)),
    }
    for function, check, grid in cases.values():
        inputs = torch.cat([grid, wide])
        check(inputs, evaluate(function, inputs, n_parties))


def test_local_truncation_sessions() -> None:
    """With two parties' local-shift truncation (budget raised so it is allowed) the bounds still hold; the
    custom truncation divisors are powers of two."""
    grid = torch.linspace(-12.0, 10.5, 400, dtype=torch.float64)
    options = {"truncation": "local", "failure_budget": 1.0}
    check_exp(grid, evaluate(exp, grid, 2, **options))
    check_sigmoid(grid, evaluate(sigmoid, grid, 2, **options))
    check_tanh(grid, evaluate(tanh, grid, 2, **options))


# -- costs -----------------------------------------------------------------------------------------------
@DEALER_PARTIES
@pytest.mark.parametrize("count", [1, 300])
def test_rounds_and_bytes(n_parties: int, count: int) -> None:
    """Per call, from the party counters: exp 14 rounds and (ltz of 11 comparisons + 144) (n-1) payload bytes
    per element, sigmoid and tanh 13 rounds and (ltz of 5 + 136) (n-1); one message per round and other party,
    114 header bytes each, exactly."""
    values = torch.linspace(-9.0, 9.0, count, dtype=torch.float64)
    functions: dict[str, tuple[Function, int, int]] = {
        "exp": (exp, EXP_ROUNDS, exp_bytes(count)), "sigmoid": (sigmoid, BOUNDED_ROUNDS, bounded_bytes(count)),
        "tanh": (tanh, BOUNDED_ROUNDS, bounded_bytes(count)),
    }

    def program(session: smpc.Session) -> dict[str, dict[str, int]]:
        party = session.party
        shares = protocols.share(party, session.encoding.encode(values) if party.rank == 0 else None, 0)
        measured = {}
        for name, (function, _, _) in functions.items():
            session.stats.reset()
            function(party, shares)
            measured[name] = session.stats.as_dict()
        return measured

    others = n_parties - 1
    for rank, measured in enumerate(run_parties(program, n_parties)):
        for name, (_, rounds, payload) in functions.items():
            stats = measured[name]
            payload_seen = stats["bytes_sent"] - FRAME_OVERHEAD_BYTES * stats["messages"]
            assert stats["rounds"] == rounds, (rank, name, stats)
            assert stats["messages"] == stats["rounds"] * others, (rank, name, stats)
            assert payload_seen == payload * others, (rank, name, stats)


# -- refusals and tables ---------------------------------------------------------------------------------
def test_unknown_methods_and_encodings_are_refused() -> None:
    """An unknown method= raises ValueError naming the methods; so does an encoding with fewer than 16
    fractional bits or int_bits below 15, before anything is sent."""
    inputs = torch.tensor([0.5], dtype=torch.float64)
    for function in (exp, sigmoid, tanh):
        with pytest.raises(smpc.PartyError, match="piecewise"):
            evaluate(lambda party, x, f=function: f(party, x, method="taylor"), inputs, 2)
        with pytest.raises(smpc.PartyError, match="frac_bits >= 16"):
            evaluate(function, inputs, 2, frac_bits=12, int_bits=37)


def test_other_encodings_keep_the_bounds() -> None:
    """frac_bits 20, int_bits 21: the same tables, finer rounding, the same bounds."""
    grid = torch.linspace(-12.0, 10.5, 600, dtype=torch.float64)
    options = {"frac_bits": 20, "int_bits": 21}
    result = evaluate(exp, grid, 3, **options)
    want = torch.exp(grid)
    domain = (grid >= EXP_DOMAIN_LOW) & (grid < EXP_TOP)
    assert bool(((result - want).abs()[domain] <= EXP_RELATIVE_BOUND * want[domain]).all())
    assert bool(((result - want).abs()[grid < EXP_DOMAIN_LOW] <= EXP_ABSOLUTE_BELOW_BOUND).all())
    for function, reference, bound in ((sigmoid, torch.sigmoid, SIGMOID_BOUND), (tanh, torch.tanh, TANH_BOUND)):
        assert float((evaluate(function, grid, 3, **options) - reference(grid)).abs().max()) <= bound


def float_errors(table: PiecewisePolynomial, reference: Callable[[torch.Tensor], torch.Tensor], max_u: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, |rounded table polynomial - reference|) in float64 on 20,001 points per piece; checks that every
    breakpoint and centre is a multiple of 2^-16 and that |u| <= max_u on every piece."""
    scale = 2.0**TABLE_FRAC_BITS
    for value in (*table.breaks, *table.centers):
        assert value * scale == math.floor(value * scale), value
    points, errors = [], []
    for region in range(1, len(table.breaks)):
        x = torch.linspace(table.breaks[region - 1], table.breaks[region], 20001, dtype=torch.float64)
        u = (x - table.centers[region]) / table.half_width
        assert float(u.abs().max()) <= max_u
        coefficients = torch.tensor(table.coefficients[region], dtype=torch.float64) / scale
        value = sum(c * u**i for i, c in enumerate(coefficients))
        points.append(x)
        errors.append((value - reference(x)).abs())
    return torch.cat(points), torch.cat(errors)


def test_exp_table_in_float() -> None:
    """The literal exp table (float64, no fixed point): relative error <= 7.9e-4 on [-3.5, top), absolute
    <= 0.7 units below, |t| <= 1.375 on every piece."""
    x, error = float_errors(EXP_TABLE, torch.exp, 1.375)
    domain = x >= EXP_DOMAIN_LOW
    assert float((error / torch.exp(x))[domain].max()) <= 7.9e-4
    assert float(error[~domain].max()) <= 0.7 * UNIT


@pytest.mark.parametrize("table, reference, bound", [(SIGMOID_TABLE, torch.sigmoid, 2.95e-4),
                                                     (TANH_TABLE, torch.tanh, 5.80e-4)])
def test_bounded_tables_in_float(table: PiecewisePolynomial, reference: Callable[[torch.Tensor], torch.Tensor],
                                 bound: float) -> None:
    """The literal sigmoid and tanh tables (float64, no fixed point): max error 2.95e-4 and 5.80e-4, |u| <= 0.7
    on every piece, c_3 and c_4 multiples of 2^-14 as the bounded scheme needs."""
    _, error = float_errors(table, reference, 0.7)
    assert float(error.max()) <= bound
    assert table.bounded
    quantum = 1 << (TABLE_FRAC_BITS - BOUNDED_HIGH_FRAC_BITS)
    assert all(c % quantum == 0 for row in table.coefficients for c in row[3:])


@pytest.mark.parametrize("table, mirror", [(SIGMOID_TABLE, 1 << 16), (TANH_TABLE, 0)])
def test_symmetric_tables_mirror_exactly(table: PiecewisePolynomial, mirror: int) -> None:
    """sigmoid(-x) = 1 - sigmoid(x) and tanh(-x) = -tanh(x) hold piece by piece in the literal tables: region
    r and region K - r have opposite breakpoints and centres, c_0 + c_0' = mirror and c_i' = (-1)^(i+1) c_i."""
    regions = len(table.centers)
    assert table.breaks == tuple(-b for b in reversed(table.breaks))
    for region in range(regions):
        other = regions - 1 - region
        assert table.centers[other] == -table.centers[region]
        mine, theirs = table.coefficients[region], table.coefficients[other]
        assert mine[0] + theirs[0] == mirror
        assert all(theirs[i] == (-1) ** (i + 1) * mine[i] for i in range(1, len(mine)))
