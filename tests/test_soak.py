"""A short soak (``benchmarks.soak``): thousands of shared products over ZeroMQ + CurveZMQ, processes for the
3 parties and the dealer, leave resident memory and open descriptors flat after warm-up, and every opened
product is right.  No timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks.soak import TOLERANCE, soak, violations

MULS = 3000
WARMUP = 500
CHECK_EVERY = 250
MAX_RSS_GROWTH_MIB = 32.0
MAX_FD_GROWTH = 2


@pytest.mark.processes
def test_short_soak_has_flat_memory_and_descriptors() -> None:
    report = soak(MULS, size=1000, parties=3, warmup=WARMUP, check_every=CHECK_EVERY, timeout=150.0)
    assert len(report["per_party"]) == 3
    checks_expected = 1 + (MULS - WARMUP) // CHECK_EVERY  # one at the end of warm-up, then every CHECK_EVERY
    for party in report["per_party"]:
        assert party["samples_after_warmup"] == (MULS - WARMUP) // CHECK_EVERY, party["rank"]
        assert party["checks"] == checks_expected and party["checks_ok"], party
        assert party["max_abs_error"] <= TOLERANCE
        assert party["rss_growth_mib"] < MAX_RSS_GROWTH_MIB, party
        assert party["fd_growth"] <= MAX_FD_GROWTH, party
    dealer = report["dealer"]
    assert dealer is not None, "the dealer process was not sampled after warm-up"
    assert dealer["pid"] not in {p["pid"] for p in report["per_party"]}
    assert dealer["samples_after_warmup"] >= 1
    assert dealer["rss_growth_mib"] < MAX_RSS_GROWTH_MIB, dealer
    assert dealer["fd_growth"] <= MAX_FD_GROWTH, dealer
    assert violations(report, MAX_RSS_GROWTH_MIB, MAX_FD_GROWTH) == []


def test_violations_name_the_node_and_the_bound() -> None:
    """The bounds check of the command line: growth over a bound, and a wrong product, are reported."""
    node = {"rss_growth_mib": 1.0, "fd_growth": 0}
    party = {"rank": 0, **node, "checks_ok": True, "max_abs_error": 0.0}
    report = {"per_party": [party, {**party, "rank": 1, "fd_growth": 5}],
              "dealer": {**node, "rss_growth_mib": 100.0}}
    problems = violations(report, 64.0, 4)
    assert len(problems) == 2
    assert problems[0].startswith("party 1: open descriptors grew by 5")
    assert problems[1].startswith("dealer: RSS grew 100.0 MiB")
    report["per_party"][0] = {**party, "checks_ok": False, "max_abs_error": 0.5}
    report["dealer"] = None
    assert violations(report, 64.0, 4)[-1].startswith("party 0: a revealed product was off")
