"""Statistical checks that what parties see is uniform over Z_2^64, whatever the secrets.

Every test function states its significance level: the probability that it fails although the values are
truly uniform is at most ALPHA = 1e-6, split over its checks by Bonferroni.  The checks (bit frequencies and a
byte chi-square per sample of 64-bit words, and a two-sample chi-square of byte histograms) are those of
``tests.support.statistics``; the first test here shows that they can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import protocols
import smpc
from tests.support.harness import run_parties, share_from
from tests.support.recording import RecordingTransport
from tests.support.statistics import (
    ALPHA,
    BYTE_DOF,
    SAMPLE,
    as_words,
    chi_square_critical,
    homogeneity_statistic,
    uniformity_failures,
)


def test_statistics_reject_non_uniform_words() -> None:
    """The checks can fail: constant words, 63-bit words and bytes below 255 are all rejected, and two
    differently distributed samples are told apart (so a passing test below means something)."""
    uniform = np.frombuffer(np.random.default_rng(7).bytes(8 * SAMPLE), dtype=np.uint64)
    assert uniformity_failures(np.zeros(SAMPLE, dtype=np.uint64), ALPHA)
    assert uniformity_failures(uniform >> np.uint64(1), ALPHA)
    low_bytes = np.minimum(uniform.view(np.uint8), 254).view(np.uint64)
    assert uniformity_failures(low_bytes, ALPHA)
    assert homogeneity_statistic(uniform, uniform >> np.uint64(1)) >= chi_square_critical(BYTE_DOF, ALPHA)
    assert abs(chi_square_critical(BYTE_DOF, 1e-6) - 377.2) < 0.5


# -- (a) a non-owner's share of a fixed secret -----------------------------------------------------------
@pytest.mark.parametrize("n_parties", [2, 3])
def test_non_owner_shares_of_a_fixed_secret_are_uniform(n_parties: int) -> None:
    """Party 0 shares SAMPLE copies of one fixed secret (1234.5625); every other party's local share is uniform
    over Z_2^64 (bits and bytes).  Significance: ALPHA over all non-owners (Bonferroni)."""
    secret = torch.full((SAMPLE,), 1234.5625, dtype=torch.float64)

    def program(session: smpc.Session) -> torch.Tensor:
        shared = session.share(secret if session.rank == 0 else None, owner=0)
        return shared.local_share

    shares = run_parties(program, n_parties)
    per_party = ALPHA / (n_parties - 1)
    failures = {rank: uniformity_failures(as_words(shares[rank]), per_party) for rank in range(1, n_parties)}
    assert failures == {rank: [] for rank in range(1, n_parties)}


# -- (b) the opened Beaver masks -------------------------------------------------------------------------
#: Inputs whose Beaver openings are compared: all zeros, and values near the range limit (x < 0 < y, so
#: every high bit of x's encoding is set).
INPUTS = {"zeros": (0.0, 0.0), "large": (-32767.5, 32767.25)}


@pytest.fixture(scope="module")
def beaver_openings() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """eps = x - a and delta = y - b as opened by party 0 of a 3-party run, for each input kind."""
    def program(session: smpc.Session) -> list[np.ndarray]:
        recorder = RecordingTransport.around(session.party)
        for x_value, y_value in INPUTS.values():
            sx, sy = share_from(session, [torch.full((SAMPLE,), x_value), torch.full((SAMPLE,), y_value)])
            protocols.mul(session.party, sx.local_share, sy.local_share, rescale=False)
        return recorder.summed_openings("mul")

    # Broadcast openings, so each tag carries one whole opening (the two-round form is tested in test_opening).
    results = run_parties(program, 3, gather_bytes=None)
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(other, results[0])), "parties opened different masks"
    openings = results[0]
    assert len(openings) == len(INPUTS) and all(o.size == 2 * SAMPLE for o in openings)
    return {name: (o[:SAMPLE], o[SAMPLE:]) for name, o in zip(INPUTS, openings)}


@pytest.mark.parametrize("inputs", sorted(INPUTS))
def test_beaver_openings_are_uniform(beaver_openings: dict[str, tuple[np.ndarray, np.ndarray]], inputs: str
                                     ) -> None:
    """The opened eps and delta of a multiplication are uniform over Z_2^64 for all-zero and for all-large
    inputs.  Significance: ALPHA over eps and delta (ALPHA / 2 each)."""
    eps, delta = beaver_openings[inputs]
    assert {"eps": uniformity_failures(eps, ALPHA / 2), "delta": uniformity_failures(delta, ALPHA / 2)} == \
        {"eps": [], "delta": []}


def test_beaver_openings_do_not_depend_on_inputs(beaver_openings: dict[str, tuple[np.ndarray, np.ndarray]]
                                                 ) -> None:
    """A two-sample chi-square of byte histograms does not tell the openings for zero inputs from those for
    large inputs.  Significance: ALPHA over eps and delta (ALPHA / 2 each, 255 dof)."""
    critical = chi_square_critical(BYTE_DOF, ALPHA / 2)
    for index, name in enumerate(("eps", "delta")):
        statistic = homogeneity_statistic(beaver_openings["zeros"][index], beaver_openings["large"][index])
        assert statistic < critical, f"{name}: homogeneity chi-square {statistic:.1f} >= {critical:.1f}"
