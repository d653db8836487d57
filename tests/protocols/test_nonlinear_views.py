"""No non-linear function shows a party anything but uniformly masked values: checked on the transport.

Every party's transport is wrapped in a proxy (``tests.support.recording.RecordingTransport``) that records each
message it sends and receives.  For each function in ``CASES`` (the comparisons ltz, sign, relu, absolute and
maximum; a polynomial; the approximations exp, sigmoid, tanh, reciprocal, sqrt, inv_sqrt, log, softmax and
log_softmax; a new function joins with one line), a 3-party run evaluates it on two very different inputs
(constant or spread, of up to SAMPLE elements), and the tests check, per function:
  * the set of operation labels crossing between parties is exactly the function's documented openings (no
    'reveal', nothing unlisted), every message sent to a party is one of them, and the dealer only ever
    receives well-formed requests from the last party and sends corrections to it alone;
  * every opened value (the sum, or XOR, of all parties' shares of one opening) and every dealer correction
    of at least MIN_CHECKED elements is uniform: 64-bit words by the bit-frequency and byte chi-square checks
    of ``tests.support.statistics``, opened bits by their 0/1 frequency;
  * the views on the two inputs cannot be told apart: a two-sample chi-square of byte histograms per
    operation label (words), a two-proportion test (bits).
Significance: each test function fails with probability at most ALPHA (1e-6) when the views are truly
uniform, split over its checks by Bonferroni.  A deliberately leaky function shows that the checks can fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import protocols
import smpc
from protocols.additive.dealer import Request
from protocols.approx.exp import exp
from protocols.approx.log import log
from protocols.approx.poly import polynomial
from protocols.approx.reciprocal import reciprocal
from protocols.approx.sigmoid import sigmoid, tanh
from protocols.approx.softmax import log_softmax, softmax
from protocols.approx.sqrt import inv_sqrt, sqrt
from protocols.party import Party
from tests.support.harness import run_parties
from tests.support.recording import RecordingTransport
from tests.support.statistics import (
    ALPHA,
    BYTE_DOF,
    SAMPLE,
    as_words,
    bit_failures,
    chi_square_critical,
    homogeneity_statistic,
    normal_upper_quantile,
    two_proportion_statistic,
    uniformity_failures,
)

N_PARTIES = 3
#: Openings combined by XOR (XOR-shared words and bits); every other opening is a sum modulo 2^64.
XOR_OPENINGS = frozenset({"and", "bit conversion"})
#: Openings of single bits (one byte per element, 0 or 1).
BIT_OPENINGS = frozenset({"bit conversion"})
#: Openings smaller than this are not tested for uniformity on their own (too few words for power), but still
#: count in the label and two-sample checks.
MIN_CHECKED = 1000
#: Longer openings are checked in near-equal chunks of at most this many elements (memory of the bit check).
MAX_CHECKED = 3 * SAMPLE
#: Elements per input for functions that compare against many breakpoints at once (their openings are
#: several times longer than the input).
APPROX_SAMPLE = SAMPLE // 5
NORMALISED_SAMPLE = SAMPLE // 20
COMPARISON_OPENINGS = frozenset({"compare", "and", "bit conversion"})

Function = Callable[[Party, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Case:
    """One function under test: its name, what it computes on a party's shares, two inputs (float64
    values, shared by party 0) and the operation labels it may open (and must, all of them)."""

    name: str
    function: Function
    input_a: torch.Tensor
    input_b: torch.Tensor
    openings: frozenset[str]


def constant(value: float, count: int = SAMPLE) -> torch.Tensor:
    return torch.full((count,), value, dtype=torch.float64)


def spread(low: float, high: float, count: int = SAMPLE) -> torch.Tensor:
    return torch.linspace(low, high, count, dtype=torch.float64)


def maximum_of_rows(party: Party, x: torch.Tensor) -> torch.Tensor:
    """The maximum of each row of 4 (two tournament levels); its one-hot is selected in the same products."""
    return protocols.maximum(party, x.reshape(-1, 4), 1)[0]


APPROX_OPENINGS = COMPARISON_OPENINGS | {"mul", "truncate"}

#: The registry: a function joins with one line (a method is chosen with a lambda, e.g.
#: ``lambda party, x: exp(party, x, method="piecewise")``).
CASES: tuple[Case, ...] = (
    Case("ltz", protocols.ltz, constant(0.0), constant(-32767.5), COMPARISON_OPENINGS),
    Case("sign", protocols.sign, constant(0.0), spread(-32767.5, -1.0), COMPARISON_OPENINGS),
    Case("relu", protocols.relu, constant(0.0), spread(30000.0, 32767.5), COMPARISON_OPENINGS | {"mul"}),
    Case("absolute", protocols.absolute, constant(-32767.5), constant(32767.5), COMPARISON_OPENINGS | {"mul"}),
    Case("maximum", maximum_of_rows, constant(0.0), spread(-32767.5, 32767.5), COMPARISON_OPENINGS | {"mul"}),
    Case("polynomial", lambda party, x: polynomial(party, x, [0.5, 0.25, -0.125, 0.0625]), constant(0.0),
         constant(-1.0), frozenset({"mul", "truncate"})),
    Case("exp", exp, constant(0.0, APPROX_SAMPLE), spread(-30.0, 10.0, APPROX_SAMPLE), APPROX_OPENINGS),
    Case("sigmoid", sigmoid, constant(0.0, APPROX_SAMPLE), constant(-30.0, APPROX_SAMPLE), APPROX_OPENINGS),
    Case("tanh", tanh, constant(0.0, APPROX_SAMPLE), spread(1.0, 32767.5, APPROX_SAMPLE), APPROX_OPENINGS),
    # The octave normalisation behind these opens 31 converted bits per element: fewer elements suffice.
    Case("reciprocal", reciprocal, constant(0.5, NORMALISED_SAMPLE), constant(1000.0, NORMALISED_SAMPLE),
         APPROX_OPENINGS),
    Case("sqrt", sqrt, constant(0.01, NORMALISED_SAMPLE), spread(100.0, 30000.0, NORMALISED_SAMPLE), APPROX_OPENINGS),
    Case("inv_sqrt", inv_sqrt, constant(4.0, NORMALISED_SAMPLE), constant(0.001, NORMALISED_SAMPLE), APPROX_OPENINGS),
    Case("log", log, constant(1.0, NORMALISED_SAMPLE), spread(0.01, 30000.0, NORMALISED_SAMPLE), APPROX_OPENINGS),
    Case("softmax", lambda party, x: softmax(party, x.reshape(-1, 4), 1).reshape(-1),
         constant(0.0, NORMALISED_SAMPLE), spread(-20.0, 20.0, NORMALISED_SAMPLE), APPROX_OPENINGS),
    Case("log_softmax", lambda party, x: log_softmax(party, x.reshape(-1, 4), 1).reshape(-1),
         constant(0.0, NORMALISED_SAMPLE), spread(-20.0, 20.0, NORMALISED_SAMPLE), APPROX_OPENINGS),
)


# -- views ----------------------------------------------------------------------------------------------
@dataclass
class View:
    """What one party's transport carried while one function ran on one input."""

    rank: int
    dealer: int
    sent: list[tuple[int, int, np.ndarray]]
    received: list[tuple[int, int, str, np.ndarray]]

    def openings(self) -> list[tuple[str, np.ndarray]]:
        """(op, opened value) per opening this party took part in, in tag order: its own share (as sent to
        any peer) combined with every share it received under that tag."""
        own = {tag: array for dst, tag, array in self.sent if dst != self.dealer}
        by_tag: dict[int, tuple[str, list[np.ndarray]]] = {}
        for src, tag, op, array in self.received:
            if src != self.dealer:
                by_tag.setdefault(tag, (op, []))[1].append(array)
        opened = []
        for tag in sorted(by_tag):
            op, shares = by_tag[tag]
            total = np.array(own[tag], copy=True).reshape(-1)
            for share in shares:
                if op in XOR_OPENINGS:
                    total ^= share.reshape(-1)
                else:
                    total = (total.view(np.uint64) + share.reshape(-1).view(np.uint64)).view(total.dtype)
            opened.append((op, total))
        return opened

    def dealer_corrections(self) -> list[tuple[str, np.ndarray]]:
        return [(op, array.reshape(-1)) for src, _, op, array in self.received if src == self.dealer]


def run_case(case: Case) -> dict[str, list[View]]:
    """Both inputs of ``case`` on N_PARTIES parties, each party's transport recorded from just after the
    input is shared until the function's output shares exist.  Returns the views per input, by rank."""
    def program(session: smpc.Session) -> dict[str, View]:
        party = session.party
        recorder = RecordingTransport.around(party)
        views = {}
        for input_name, value in (("a", case.input_a), ("b", case.input_b)):
            shares = session.share(value if session.rank == 0 else None, owner=0).local_share
            recorder.take()
            case.function(party, shares)
            views[input_name] = View(session.rank, party.dealer_id, *recorder.take())
        party.transport = recorder.inner
        return views

    # Broadcast openings only, so a view's openings can be rebuilt from one tag each (the two-round form
    # carries the same shares and opened values, split in chunks: tests/protocols/test_opening.py).
    results = run_parties(program, N_PARTIES, gather_bytes=None)
    return {name: [result[name] for result in results] for name in ("a", "b")}


@pytest.fixture(scope="module", params=CASES, ids=[case.name for case in CASES])
def recorded(request: pytest.FixtureRequest) -> tuple[Case, dict[str, list[View]]]:
    case: Case = request.param
    return case, run_case(case)


# -- checks ---------------------------------------------------------------------------------------------
def samples(views: list[View]) -> list[tuple[str, np.ndarray]]:
    """The values to check in one input's run: party 0's openings (every party opens the same ones) and the
    last party's dealer corrections, labelled 'open <op>' and '<dealer op>'."""
    opened = [(f"open {op}", value) for op, value in views[0].openings()]
    return opened + views[-1].dealer_corrections()


def test_checks_catch_a_leaky_function() -> None:
    """The checks below can fail: a function that 'compares' by opening its raw input, and then reveals it,
    shows the labels 'compare' and 'reveal' and non-uniform openings on all-zero input."""
    def leaky(party: Party, x: torch.Tensor) -> torch.Tensor:
        party.open(x, "compare")
        return protocols.reveal(party, protocols.ltz(party, x))

    case = Case("leaky", leaky, constant(0.0), constant(1.0), COMPARISON_OPENINGS)
    views = run_case(case)
    assert opening_labels(views["a"]) == COMPARISON_OPENINGS | {"reveal"}
    first_opening = views["a"][0].openings()[0]
    assert first_opening[0] == "compare" and uniformity_failures(as_words(first_opening[1]), ALPHA)
    skewed = np.zeros(SAMPLE, dtype=np.uint8)
    skewed[: SAMPLE // 3] = 1
    assert bit_failures(skewed, ALPHA) and bit_failures(np.full(10, 2, dtype=np.uint8), ALPHA)
    assert two_proportion_statistic(skewed, 1 - skewed) > normal_upper_quantile(ALPHA / 2)


def opening_labels(views: list[View]) -> set[str]:
    """Labels of every message between parties, as each receiver named it."""
    return {op for view in views for src, _, op, _ in view.received if src != view.dealer}


def test_only_masked_openings_cross_between_parties(recorded: tuple[Case, dict[str, list[View]]]) -> None:
    """The labels of messages between parties are exactly the function's openings; every message a party
    sent was received (and so labelled) by its destination; parties open the same values; the dealer hears
    only well-formed requests, from the last party, and talks to no one else."""
    case, views = recorded
    for input_name, party_views in views.items():
        assert opening_labels(party_views) == set(case.openings), input_name
        received = {(view.rank, src, tag) for view in party_views for src, tag, _, _ in view.received}
        for view in party_views:
            for dst, tag, array in view.sent:
                if dst == view.dealer:
                    assert view.rank == N_PARTIES - 1, f"party {view.rank} sent the dealer something"
                    Request.decode(array)  # kinds and shapes only; raises on anything else
                else:
                    assert (dst, view.rank, tag) in received, f"party {view.rank} sent tag {tag} unlabelled"
            if view.rank != N_PARTIES - 1:
                assert view.dealer_corrections() == [], f"party {view.rank} heard from the dealer"
        first = [(op, value.tobytes()) for op, value in party_views[0].openings()]
        for view in party_views[1:]:
            assert [(op, value.tobytes()) for op, value in view.openings()] == first, view.rank


def test_opened_values_are_uniform(recorded: tuple[Case, dict[str, list[View]]]) -> None:
    """Every opening (and dealer correction) of at least MIN_CHECKED elements is uniform: 64-bit words by
    bits and bytes, opened bits by their frequency (long ones in chunks of at most MAX_CHECKED).
    Significance: ALPHA over all of them, both inputs."""
    case, views = recorded
    checked = [(input_name, label, chunk) for input_name, party_views in views.items()
               for label, value in samples(party_views) if value.size >= MIN_CHECKED
               for chunk in np.array_split(value, -(-value.size // MAX_CHECKED))]
    assert len(checked) >= len(case.openings), "too few openings large enough to test"
    alpha = ALPHA / len(checked)
    failures = []
    for input_name, label, value in checked:
        found = (bit_failures(value, alpha) if label.removeprefix("open ") in BIT_OPENINGS
                 else uniformity_failures(as_words(value), alpha))
        failures.extend(f"input {input_name}, {label} ({value.size}): {failure}" for failure in found)
    assert failures == []


def test_views_do_not_depend_on_the_input(recorded: tuple[Case, dict[str, list[View]]]) -> None:
    """Per label, all openings (and dealer corrections) on input a against those on input b: a two-sample
    chi-square of byte histograms for words, a two-proportion test for bits.  Significance: ALPHA over the
    labels."""
    case, views = recorded
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    for input_name, party_views in views.items():
        for label, value in samples(party_views):
            pooled.setdefault(label, {"a": [], "b": []})[input_name].append(value)
    assert {label.removeprefix("open ") for label in pooled if label.startswith("open ")} == set(case.openings)
    alpha = ALPHA / len(pooled)
    failures = []
    for label, by_input in pooled.items():
        first, second = np.concatenate(by_input["a"]), np.concatenate(by_input["b"])
        if label.removeprefix("open ") in BIT_OPENINGS:
            statistic, critical = two_proportion_statistic(first, second), normal_upper_quantile(alpha / 2)
        else:
            statistic = homogeneity_statistic(as_words(first), as_words(second))
            critical = chi_square_critical(BYTE_DOF, alpha)
        if statistic >= critical:
            failures.append(f"{label}: statistic {statistic:.1f} >= {critical:.1f}")
    assert failures == []
