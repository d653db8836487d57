"""Statistical checks that what parties see is uniform over Z_2^64, whatever the secrets.

Every test function states its significance level: the probability that it fails although the values are
truly uniform is at most ALPHA = 1e-6, split over its checks by Bonferroni.  Two checks per sample of
64-bit words:
  * bits: each of the 64 bit frequencies p_hat satisfies |p_hat - 1/2| < z sqrt(1/4N), z the two-sided normal
    quantile for the sample's share of alpha split over the 64 bits;
  * bytes: Pearson's chi-square of the 256 byte-value counts (255 degrees of freedom) stays under the
    critical value at the sample's share of alpha (Wilson-Hilferty approximation of the chi-square quantile).
A two-sample chi-square (homogeneity, 2 x 256 table, 255 dof) compares byte histograms of two samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import protocols
import smpc
from tests.support.harness import run_parties, share_from

#: Significance level of each test function.
ALPHA = 1e-6
#: Elements per sample: 20,000 words = 160,000 bytes (625 expected per byte value).
SAMPLE = 20_000
BYTE_DOF = 255


# -- statistics ------------------------------------------------------------------------------------------
def normal_upper_quantile(alpha: float) -> float:
    """z with P(Z > z) = alpha for a standard normal Z, by bisection on erfc (accurate to ~1e-12)."""
    low, high = 0.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * math.erfc(middle / math.sqrt(2.0)) > alpha:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def chi_square_critical(dof: int, alpha: float) -> float:
    """Upper alpha quantile of chi-square(dof), Wilson-Hilferty: dof (1 - 2/(9 dof) + z sqrt(2/(9 dof)))^3.
    For dof=255, alpha=1e-6 this is 377.2 (the exact quantile differs by well under 1%)."""
    z = normal_upper_quantile(alpha)
    spread = 2.0 / (9.0 * dof)
    return dof * (1.0 - spread + z * math.sqrt(spread)) ** 3


def as_words(values: Any) -> np.ndarray:
    """Flatten int64 tensors/arrays into one uint64 array (the same bits)."""
    array = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return np.ascontiguousarray(array, dtype=np.int64).reshape(-1).view(np.uint64)


def byte_counts(words: np.ndarray) -> np.ndarray:
    return np.bincount(words.view(np.uint8), minlength=256).astype(np.float64)


def uniformity_failures(words: np.ndarray, alpha: float) -> list[str]:
    """Why ``words`` do not look uniform at significance ``alpha`` (split evenly between the bit family and
    the byte chi-square); empty when they do."""
    failures = []
    count = words.size
    bits = ((words[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
    z = normal_upper_quantile(alpha / 2 / 64 / 2)  # half of alpha, over 64 bits, two-sided
    limit = z * math.sqrt(0.25 / count)
    for bit in np.flatnonzero(np.abs(bits - 0.5) >= limit):
        failures.append(f"bit {bit} set in {bits[bit]:.4f} of {count} words (limit 0.5 +- {limit:.4f})")
    observed = byte_counts(words)
    expected = observed.sum() / 256
    statistic = float(((observed - expected) ** 2 / expected).sum())
    critical = chi_square_critical(BYTE_DOF, alpha / 2)
    if statistic >= critical:
        failures.append(f"byte chi-square {statistic:.1f} >= {critical:.1f}")
    return failures


def homogeneity_statistic(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson chi-square of the 2 x 256 table of byte counts of two samples (255 dof)."""
    table = np.stack([byte_counts(first), byte_counts(second)])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


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
class RecordingTransport:
    """A transport proxy that forwards everything and keeps what this party sent, and what it received for
    one operation (the ``op`` of recv), keyed by tag."""

    def __init__(self, inner: Any, op: str) -> None:
        self._inner = inner
        self._op = op
        self.sent: dict[tuple[int, int], np.ndarray] = {}
        self.received: dict[int, list[tuple[int, np.ndarray]]] = {}

    @property
    def rank(self) -> int:
        return self._inner.rank

    @property
    def peers(self) -> tuple[int, ...]:
        return self._inner.peers

    @property
    def stats(self) -> Any:
        return self._inner.stats

    def send(self, dst: int, tag: int, array: np.ndarray) -> None:
        self.sent[(dst, tag)] = np.array(array, copy=True)
        self._inner.send(dst, tag, array)

    def recv(self, src: int, tag: int, *, op: str = "") -> np.ndarray:
        array = self._inner.recv(src, tag, op=op)
        if op == self._op:
            self.received.setdefault(tag, []).append((src, np.array(array, copy=True)))
        return array

    def close(self, *, abort: bool = False, reason: str = "") -> None:
        self._inner.close(abort=abort, reason=reason)

    def openings(self) -> list[np.ndarray]:
        """The values opened under the recorded op, in tag order: our own sent share plus every received one."""
        opened = []
        for tag in sorted(self.received):
            messages = self.received[tag]
            total = self.sent[(messages[0][0], tag)].astype(np.int64).reshape(-1).view(np.uint64).copy()
            for _, array in messages:
                total += np.asarray(array, dtype=np.int64).reshape(-1).view(np.uint64)
            opened.append(total)
        return opened


#: Inputs whose Beaver openings are compared: all zeros, and values near the range limit (x < 0 < y, so
#: every high bit of x's encoding is set).
INPUTS = {"zeros": (0.0, 0.0), "large": (-32767.5, 32767.25)}


@pytest.fixture(scope="module")
def beaver_openings() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """eps = x - a and delta = y - b as opened by party 0 of a 3-party run, for each input kind."""
    def program(session: smpc.Session) -> list[np.ndarray]:
        recorder = RecordingTransport(session.party.transport, op="mul")
        session.party.transport = recorder
        for x_value, y_value in INPUTS.values():
            sx, sy = share_from(session, [torch.full((SAMPLE,), x_value), torch.full((SAMPLE,), y_value)])
            protocols.mul(session.party, sx.local_share, sy.local_share, rescale=False)
        return recorder.openings()

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
