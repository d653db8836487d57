"""Randomized response (Warner 1965): :func:`randomized_response`, :func:`randomized_response_estimate`,
:func:`randomized_response_epsilon`; its coins come from the operating system's cryptographic generator.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

# Bits of the uniform variate that decides randomized response; probabilities are exact at this resolution.
_COIN_BITS = 53


def _check_rr_epsilon(epsilon: float) -> None:
    """Raise ValueError unless epsilon is a finite number > 0."""
    if isinstance(epsilon, bool) or not 0.0 < epsilon < math.inf:
        raise ValueError(f"randomized response needs epsilon a finite number > 0, got {epsilon!r}")


def _truth_probability(epsilon: float) -> float:
    """p = e^eps / (1 + e^eps), rounded down to a float whose own ln(p / (1 - p)) is at most eps.

    Capped below 1 (at 1 - 2^-53, epsilon ~36.7), so the mechanism never answers truthfully for sure.
    """
    p = min(1.0 / (1.0 + math.exp(-epsilon)), math.nextafter(1.0, 0.0))
    while math.log(p) - math.log1p(-p) > epsilon:
        p = math.nextafter(p, 0.0)
    return p


def randomized_response(answer: bool, epsilon: float) -> bool:
    """Report ``answer`` truthfully with probability p = e^eps / (1 + e^eps), else its negation: epsilon-DP.

    For either true answer, P(report | yes) / P(report | no) <= p / (1 - p) = e^epsilon.  The coin is a 53-bit
    uniform integer from ``secrets`` (the OS's cryptographic generator), compared with p * 2^53, which is exact
    for p in [1/2, 1), so the truth probability is p exactly (p is rounded down so that its epsilon never exceeds
    ``epsilon``).  Raises ValueError for epsilon not a finite number > 0, TypeError for a non-bool answer.
    """
    if not isinstance(answer, bool):
        raise TypeError(f"answer must be a bool, got {type(answer).__name__}")
    _check_rr_epsilon(epsilon)
    threshold = int(_truth_probability(epsilon) * (1 << _COIN_BITS))
    truthful = secrets.randbits(_COIN_BITS) < threshold
    return answer if truthful else not answer


def randomized_response_estimate(reports: Sequence[bool], epsilon: float) -> float:
    """Unbiased estimate of the true fraction of "yes" from ``reports`` of :func:`randomized_response`(., epsilon).

    With p = e^eps / (1 + e^eps) and m the fraction of "yes" reports, E[m] = (2p - 1) pi + (1 - p) for a true
    fraction pi, so pi_hat = (m - (1 - p)) / (2p - 1) has E[pi_hat] = pi.  Its variance over n reports is
    Var = m_bar (1 - m_bar) / (n (2p - 1)^2) with m_bar = E[m], i.e. pi (1 - pi) / n + p (1 - p) / (n (2p - 1)^2):
    the sampling variance plus the price of privacy, ~ 1 / (n eps^2) for small eps.  The estimate is not clipped
    to [0, 1] (clipping would bias it).  Raises ValueError for no reports, a report that is not a bool (or 0/1),
    or epsilon not a finite number > 0.
    """
    _check_rr_epsilon(epsilon)
    values = list(reports)
    if not values:
        raise ValueError("randomized_response_estimate needs at least one report")
    if any(isinstance(value, str) or value not in (0, 1) for value in values):
        raise ValueError("reports must be booleans (or 0/1)")
    p = _truth_probability(epsilon)
    mean = sum(1 for value in values if value) / len(values)
    return (mean - (1.0 - p)) / (2.0 * p - 1.0)


def randomized_response_epsilon(p_truth: float) -> float:
    """The epsilon of randomized response that tells the truth with probability ``p_truth``: |ln(p / (1 - p))|.

    For p >= 1/2 this is ln(p / (1 - p)), the inverse of p = e^eps / (1 + e^eps); p = 1/2 gives 0 (the report is
    a fair coin).  Raises ValueError for p outside (0, 1) (p = 0 or 1 is not private at all).
    """
    if isinstance(p_truth, bool) or not 0.0 < p_truth < 1.0:
        raise ValueError(f"p_truth must be in (0, 1), got {p_truth!r}")
    return abs(math.log(p_truth) - math.log1p(-p_truth))
