"""protocols.approx reciprocal, sqrt, inv_sqrt and log against float64 torch, for 2 and 3 parties.

Each function is compared with the float64 function of the ENCODED input x^ = round(x 2^16) / 2^16 (its
documented error is relative to the value it is given) and must meet the bound its docstring states:
|y - f(x^)| <= R |f(x^)| + A on its domain, relative error <= 1e-3 where the docstring says so, and the documented
value outside the domain (exactly 0 for x <= 0, ...).  Rounds and bytes are those documented, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import protocols
import protocols.additive.truncation
import smpc
from network.local import FRAME_OVERHEAD_BYTES
from protocols.approx.log import log
from protocols.approx.normalize import normalize
from protocols.approx.reciprocal import reciprocal
from protocols.approx.sqrt import inv_sqrt, sqrt
from protocols.party import Party
from tests.support.checks import DEALER_PARTIES, FLOAT_SLACK, PARTIES
from tests.support.harness import run_parties

UNIT = 2.0 ** -16
TOP = 2.0 ** 15 - UNIT
#: normalize's documented cost: rounds, bytes sent per party per element and per other party, and dealer bytes
#: per element to the last party (unsigned; signed doubles the bytes).
NORMALIZE_ROUNDS = 12
NORMALIZE_BYTES = 231
NORMALIZE_DEALER_BYTES = 368


def _tiny_reciprocal(x: torch.Tensor) -> torch.Tensor:
    """Documented result of reciprocal for 0 < |x| < 2^-14: 2^13 / x' with x' = |x| 2^-(t+1) (sign of x)."""
    magnitude = x.abs()
    reduced = magnitude * torch.exp2(-(torch.floor(torch.log2(magnitude)) + 1))
    return torch.sign(x) * 2.0 ** 13 / reduced


@dataclass(frozen=True)
class Case:
    """One documented approximation: its call, reference, domain, bound |y - f| <= R |f| + A units, rounds,
    bytes sent per party per element and per other party, where it claims relative error <= 1e-3, and what it
    returns outside the domain."""

    function: Callable[[Party, torch.Tensor], torch.Tensor]
    reference: Callable[[torch.Tensor], torch.Tensor]
    low: float
    relative: float
    absolute_units: float
    rounds: int
    payload: int
    relative_where: Callable[[torch.Tensor], torch.Tensor]
    signed: bool = False
    #: Documented result for inputs in no octave of the domain but not 0 (reciprocal of 1 to 3 units).
    tiny: Callable[[torch.Tensor], torch.Tensor] | None = None

    def in_domain(self, x: torch.Tensor) -> torch.Tensor:
        magnitude = x.abs() if self.signed else x
        return magnitude >= self.low

    def expected_outside(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Documented value outside the domain, and its allowed error: exactly 0 unless ``tiny`` says otherwise
        (then within the same bound as inside)."""
        if self.tiny is None:
            return torch.zeros_like(x), torch.zeros_like(x)
        tiny = (x != 0) & ((x > 0) | self.signed)
        want = torch.where(tiny, self.tiny(torch.where(tiny, x, torch.ones_like(x))), 0.0)
        return want, torch.where(tiny, self.relative * want.abs() + self.absolute_units * UNIT, 0.0)


def _between(low: float, high: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: (x.abs() >= low) & (x.abs() <= high)


def _log_far_from_one(limit: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: (x > 0) & (torch.log(x.clamp(min=UNIT)).abs() >= limit)


CASES: dict[str, Case] = {
    "reciprocal/poly4": Case(partial(reciprocal, method="poly4"), torch.reciprocal, 2.0 ** -14, 3.5e-4, 2.0, 19,
                             383, _between(2.0 ** -14, 16.0), tiny=_tiny_reciprocal),
    "reciprocal/poly8": Case(partial(reciprocal, method="poly8"), torch.reciprocal, 2.0 ** -14, 1e-5, 2.0, 21,
                             527, _between(2.0 ** -14, 32.0), tiny=_tiny_reciprocal),
    "reciprocal/signed": Case(partial(reciprocal, method="poly4", signed=True), torch.reciprocal, 2.0 ** -14,
                              3.5e-4, 2.0, 19, 614, _between(2.0 ** -14, 16.0), signed=True, tiny=_tiny_reciprocal),
    "sqrt/poly2": Case(partial(sqrt, method="poly2"), torch.sqrt, UNIT, 7e-4, 1.5, 17, 343,
                       _between(2.0 ** -7, TOP)),
    "sqrt/poly4": Case(partial(sqrt, method="poly4"), torch.sqrt, UNIT, 3e-5, 1.5, 19, 463,
                       _between(2.0 ** -10, TOP)),
    "inv_sqrt/poly4": Case(partial(inv_sqrt, method="poly4"), torch.rsqrt, UNIT, 1.2e-4, 1.5, 19, 479,
                           _between(UNIT, 2.0 ** 10)),
    "inv_sqrt/poly8": Case(partial(inv_sqrt, method="poly8"), torch.rsqrt, UNIT, 3e-5, 1.5, 21, 719,
                           _between(UNIT, 2.0 ** 10)),
    "log/poly4": Case(partial(log, method="poly4"), torch.log, UNIT, 0.0, 1e-4 / UNIT, 19, 335,
                      _log_far_from_one(0.1)),
    "log/poly8": Case(partial(log, method="poly8"), torch.log, UNIT, 0.0, 3.0, 21, 431,
                      _log_far_from_one(0.05)),
}

#: Inputs at and around every domain edge: 0, 1 to 4 units, 2^-14, 1, 16, 32, 2^10, 2^15 - 1 unit, negatives.
EDGES = [0.0, UNIT, 2 * UNIT, 3 * UNIT, 4 * UNIT, 5 * UNIT, 2.0 ** -10, 2.0 ** -7, 0.5 - UNIT, 0.5, 1 - UNIT, 1.0,
         1 + UNIT, 0.905, 1.105, 2.0, 16.0, 32.0, 33.0, 1024.0, 2.0 ** 14, TOP, -UNIT, -3 * UNIT, -4 * UNIT, -0.75,
         -1.0, -33.0, -TOP]


# -- running ---------------------------------------------------------------------------------------------
def evaluate(values: torch.Tensor, names: list[str], n_parties: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Share ``values`` (encoded) from the last party, run every named case on them, reveal.  Returns the
    decoded encoded inputs and each case's opened float64 result; all parties must open the same."""
    encoded = smpc.FixedPoint().encode(values)
    owner = n_parties - 1

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        family = session.family  # either protocol family: the replicated one runs each function for two parties
        shares = family.share(encoded if session.rank == owner else None, owner)
        return {name: session.encoding.decode(family.reveal(family.call(CASES[name].function, shares)))
                for name in names}

    results = run_parties(program, n_parties)
    for rank, other in enumerate(results[1:], start=1):
        for name in names:
            assert torch.equal(other[name], results[0][name]), f"party {rank} opened a different {name}"
    return smpc.FixedPoint().decode(encoded), results[0]


def check(name: str, x: torch.Tensor, got: torch.Tensor) -> dict[str, float]:
    """Assert the documented bounds of case ``name`` on every element; returns the measured maxima."""
    case = CASES[name]
    assert got.shape == x.shape and got.dtype == torch.float64
    inside = case.in_domain(x)
    want = torch.where(inside, case.reference(torch.where(inside, x, torch.ones_like(x))), 0.0)
    bound = case.relative * want.abs() + case.absolute_units * UNIT
    outside_want, outside_bound = case.expected_outside(x)
    want = torch.where(inside, want, outside_want)
    bound = torch.where(inside, bound, outside_bound)
    error = (got - want).abs()
    misses = (error > bound + FLOAT_SLACK).nonzero().reshape(-1)
    assert misses.numel() == 0, (
        f"{name}: {misses.numel()} outside the bound, e.g. x={x[misses[:4]].tolist()} got={got[misses[:4]].tolist()} "
        f"want={want[misses[:4]].tolist()}")
    claimed = inside & case.relative_where(x)
    relative = error[claimed] / want[claimed].abs()
    assert bool((relative <= 1e-3).all()), f"{name}: relative error {float(relative.max()):.3g} > 1e-3 where claimed"
    return {"relative": float(relative.max()) if relative.numel() else 0.0,
            "absolute": float(error[inside].max()) if bool(inside.any()) else 0.0}


# -- normalize -------------------------------------------------------------------------------------------
@DEALER_PARTIES
@given(values=st.lists(st.integers(-(2 ** 31) + 1, 2 ** 31 - 1), min_size=1, max_size=200))
def test_normalize_finds_the_octave(n_parties: int, values: list[int]) -> None:
    """For every encodable x (raw ring values, edges included): the bits are one-hot on the octave
    2^t <= x < 2^(t+1) (of -x for x < 0 when signed) and all 0 for x = 0 (and x < 0 unsigned); exponent() is
    t+1 and x * scale() lies in [0.5, 1) with scale() an exact power of two; NORMALIZE_ROUNDS rounds, signed
    or not."""
    edges = [0, 1, 2, 3, -1, 2 ** 31 - 1, -(2 ** 31) + 1, 2 ** 16, 2 ** 16 - 1, -(2 ** 16)]
    raw = torch.tensor(values + edges, dtype=torch.int64)

    def program(session: smpc.Session) -> dict[str, Any]:
        party = session.party
        shares = protocols.share(party, raw if party.rank == 0 else None, owner=0)
        before = party.rounds
        plain, signed = normalize(party, shares), normalize(party, shares, signed=True)
        rounds = party.rounds - before
        scalar = normalize(party, shares[0])
        return {"rounds": rounds, "exponents": plain.exponents, "scalar": protocols.reveal(party, scalar.positive),
                "positive": protocols.reveal(party, plain.positive),
                "exponent": protocols.reveal(party, plain.exponent()),
                "scale": protocols.reveal(party, plain.scale(session.encoding.scale)),
                "signed positive": protocols.reveal(party, signed.positive),
                "signed negative": protocols.reveal(party, signed.negative),
                "signed scale": protocols.reveal(party, signed.scale(session.encoding.scale))}

    got = run_parties(program, n_parties)[0]
    assert got["rounds"] == 2 * NORMALIZE_ROUNDS
    exponents = torch.tensor(got["exponents"])
    x = raw.to(torch.float64) * UNIT
    octave = torch.floor(torch.log2(x.abs().clamp(min=UNIT))).to(torch.int64)
    expected = (exponents[:, None] == octave[None, :]).to(torch.int64)
    positive_expected = expected * (raw > 0)
    assert torch.equal(got["positive"], positive_expected)
    assert torch.equal(got["scalar"], positive_expected[:, 0])
    assert torch.equal(got["signed positive"], positive_expected)
    assert torch.equal(got["signed negative"], expected * (raw < 0))
    assert torch.equal(got["exponent"], torch.where(raw > 0, octave + 1, 0))
    for name, covered in (("scale", raw > 0), ("signed scale", raw != 0)):
        sign = torch.where(covered, torch.sign(x), 0.0)
        scale = got[name].to(torch.float64) * UNIT
        assert torch.equal(scale, sign * torch.exp2(-(octave + 1).to(torch.float64)))
        reduced = (x * scale)[covered]
        assert bool(((reduced >= 0.5) & (reduced < 1)).all())


# -- hypothesis ------------------------------------------------------------------------------------------
def magnitudes(low_exponent: float, size: int) -> st.SearchStrategy[list[float]]:
    """Log-uniform values in [2^low_exponent, 2^15 - 1 unit], some negated, plus every edge value."""
    value = st.floats(low_exponent, 15.0, exclude_max=True).map(lambda e: min(2.0 ** e, TOP))
    return st.lists(st.one_of(value, value, value, value.map(lambda v: -v)), min_size=size, max_size=size).map(
        lambda drawn: drawn + EDGES)


@PARTIES
@given(values=magnitudes(-16.0, 250))
def test_reciprocal_meets_documented_bounds(n_parties: int, values: list[float]) -> None:
    """reciprocal (poly4, poly8, signed) on log-uniform draws over the whole range and every edge."""
    names = ["reciprocal/poly4", "reciprocal/poly8", "reciprocal/signed"]
    x, got = evaluate(torch.tensor(values, dtype=torch.float64), names, n_parties)
    for name in names:
        check(name, x, got[name])


@PARTIES
@given(values=magnitudes(-16.0, 250))
def test_sqrt_and_inv_sqrt_meet_documented_bounds(n_parties: int, values: list[float]) -> None:
    """sqrt (poly2, poly4) and inv_sqrt (poly4, poly8) on log-uniform draws and every edge."""
    names = ["sqrt/poly2", "sqrt/poly4", "inv_sqrt/poly4", "inv_sqrt/poly8"]
    x, got = evaluate(torch.tensor(values, dtype=torch.float64), names, n_parties)
    for name in names:
        check(name, x, got[name])


@PARTIES
@given(values=magnitudes(-16.0, 200), near_one=st.lists(st.floats(0.5, 2.0), min_size=100, max_size=100))
def test_log_meets_documented_bounds(n_parties: int, values: list[float], near_one: list[float]) -> None:
    """log (poly4, poly8) on log-uniform draws, values around 1 (absolute error only), and every edge."""
    names = ["log/poly4", "log/poly8"]
    x, got = evaluate(torch.tensor(values + near_one, dtype=torch.float64), names, n_parties)
    for name in names:
        check(name, x, got[name])


# -- dense grids -----------------------------------------------------------------------------------------
DENSE = torch.logspace(-16 * math.log10(2.0), math.log10(TOP), 5000, dtype=torch.float64)


@pytest.mark.parametrize("names", [["reciprocal/poly4", "reciprocal/poly8"], ["sqrt/poly2", "sqrt/poly4"],
                                   ["inv_sqrt/poly4", "inv_sqrt/poly8"], ["log/poly4", "log/poly8"]])
def test_dense_grid_max_error(names: list[str]) -> None:
    """5,000 log-spaced points over [2^-16, 2^15) (three parties): the documented bounds hold at every point
    (the docstrings report the maxima measured here)."""
    x, got = evaluate(DENSE, names, 3)
    for name in names:
        measured = check(name, x, got[name])
        assert measured["relative"] > 0.0


def test_dense_grid_signed_reciprocal() -> None:
    """The signed reciprocal on the dense grid and its negation: odd, and within the bound on both sides."""
    values = torch.cat([DENSE[::4], -DENSE[::4]])
    x, got = evaluate(values, ["reciprocal/signed"], 2)
    check("reciprocal/signed", x, got["reciprocal/signed"])
    half = DENSE[::4].numel()
    assert bool((got["reciprocal/signed"][half:] < 0).all())


# -- rounds ----------------------------------------------------------------------------------------------
@DEALER_PARTIES
def test_documented_rounds(n_parties: int) -> None:
    """Each call takes exactly its documented rounds (normalize: NORMALIZE_ROUNDS, signed or not) and sends
    exactly its documented bytes per element and per other party (normalize: NORMALIZE_BYTES, twice that
    signed), plus the frame headers; every party alike.  normalize's dealer material is as documented too."""
    values = torch.tensor([[0.3, 7.0], [1e-3, 2000.0]], dtype=torch.float64)
    encoded = smpc.FixedPoint().encode(values)
    calls: dict[str, Callable[[Party, torch.Tensor], torch.Tensor]] = {
        "normalize": lambda party, x: normalize(party, x).positive,
        "normalize/signed": lambda party, x: normalize(party, x, signed=True).positive,
        **{name: case.function for name, case in CASES.items()},
    }

    def program(session: smpc.Session) -> dict[str, dict[str, int]]:
        party = session.party
        shares = protocols.share(party, encoded if party.rank == 0 else None, owner=0)
        counts = {}
        for name, function in calls.items():
            session.stats.reset()
            result = function(party, shares)
            assert result.shape[-2:] == shares.shape
            counts[name] = session.stats.as_dict()
        return counts

    expected = {"normalize": (NORMALIZE_ROUNDS, NORMALIZE_BYTES),
                "normalize/signed": (NORMALIZE_ROUNDS, 2 * NORMALIZE_BYTES),
                **{name: (case.rounds, case.payload) for name, case in CASES.items()}}
    others = n_parties - 1
    for rank, counts in enumerate(run_parties(program, n_parties)):
        for name, (rounds, payload) in expected.items():
            stats = counts[name]
            assert stats["rounds"] == rounds, (rank, name, stats)
            assert stats["bytes_sent"] == payload * others * values.numel() + FRAME_OVERHEAD_BYTES * stats[
                "messages"], (rank, name, stats)
        if rank == n_parties - 1:
            for name, factor in (("normalize", 1), ("normalize/signed", 2)):
                requests = 1 + 5 + 5 + 1  # the mask, the AND levels, the random bits
                dealer = factor * NORMALIZE_DEALER_BYTES * values.numel() + FRAME_OVERHEAD_BYTES * requests
                assert counts[name]["dealer_bytes_received"] == dealer, (name, counts[name])


def test_shapes_and_unknown_methods() -> None:
    """A 0-d input gives a 0-d result within its bound; an empty input gives an empty result in no rounds;
    an unknown method raises ValueError before any communication."""
    functions = {"reciprocal": reciprocal, "sqrt": sqrt, "inv_sqrt": inv_sqrt, "log": log}
    encoded = smpc.FixedPoint().encode(torch.tensor(3.0, dtype=torch.float64))

    def program(session: smpc.Session) -> dict[str, Any]:
        party = session.party
        scalar = protocols.share(party, encoded if party.rank == 0 else None, owner=0)
        empty = torch.zeros(0, 3, dtype=torch.int64)
        outcome: dict[str, Any] = {}
        for name, function in functions.items():
            outcome[name] = session.encoding.decode(protocols.reveal(party, function(party, scalar)))
            before = party.rounds
            outcome[name + " empty"] = (function(party, empty).shape, party.rounds - before)
            try:
                function(party, scalar, method="chebyshev")
                outcome[name + " unknown"] = "no error"
            except ValueError:
                outcome[name + " unknown"] = "ValueError"
        return outcome

    got = run_parties(program, 2)[0]
    for name, reference in {"reciprocal": 1 / 3, "sqrt": math.sqrt(3), "inv_sqrt": 1 / math.sqrt(3),
                            "log": math.log(3)}.items():
        assert got[name].shape == () and abs(float(got[name]) - reference) < 1e-3 * abs(reference)
        assert got[name + " empty"] == ((0, 3), 0)
        assert got[name + " unknown"] == "ValueError"
