"""Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism (the noise of DP-SGD).

:func:`rdp_sampled_gaussian`, :func:`epsilon_spent`, :func:`noise_multiplier_for`.  RDP per Mironov, Talwar and
Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (2019, arXiv:1908.10530), composed over steps
by adding RDP, converted to (epsilon, delta) with the improved bound of Canonne, Kamath and Steinke (2020,
arXiv:2004.00010, Proposition 12; also Asoodeh et al. 2020, arXiv:2001.05990, Eq. 20, and Balle et al. 2020,
"Hypothesis testing interpretations and Rényi DP", Theorem 21), as Google's ``dp_accounting`` (TF Privacy) and
Opacus do.  Adjacency: add or remove one example.  Pure Python: no network, no shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: RDP orders alpha tried by :func:`epsilon_spent` (those of TF Privacy's ``compute_dp_sgd_privacy``): integer
#: orders use the exact binomial expansion, the fractional ones Mironov et al.'s series (see
#: :func:`rdp_sampled_gaussian`).
DEFAULT_ORDERS: tuple[float, ...] = (
    (1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5)
    + tuple(float(alpha) for alpha in range(5, 64))
    + (128.0, 256.0, 512.0)
)

# The fractional-order series stops once a term is this far (in log) below the running sum, 30 nats ~ 1e-13.
_SERIES_TAIL_LOG = 30.0
# A fractional order whose series has not converged after this many terms is left out (its RDP set to inf).
_SERIES_MAX_TERMS = 1000
# Below this order the conversion to (epsilon, delta) is numerically unstable and useless anyway.
_MIN_CONVERSION_ORDER = 1.01
# noise_multiplier_for's bisection stops when the bracket is this narrow relative to its upper end.
_SIGMA_RELATIVE_TOLERANCE = 1e-3
# noise_multiplier_for gives up outside [_SIGMA_FLOOR, _SIGMA_CEILING].
_SIGMA_FLOOR = 1e-6
_SIGMA_CEILING = 1e6


def _log_add(log_x: float, log_y: float) -> float:
    """log(exp(log_x) + exp(log_y)) without overflow."""
    low, high = min(log_x, log_y), max(log_x, log_y)
    if low == -math.inf:
        return high
    return high + math.log1p(math.exp(low - high))


def _log_sub(log_x: float, log_y: float) -> float:
    """log(exp(log_x) - exp(log_y)) for log_x >= log_y; -inf when they are equal."""
    if log_y == -math.inf:
        return log_x
    if log_x <= log_y:
        return -math.inf
    return log_x + math.log1p(-math.exp(log_y - log_x))


def _log_erfc(x: float) -> float:
    """log(erfc(x)), accurate also where erfc(x) underflows (x > ~26), by the asymptotic series of erfc."""
    value = math.erfc(x)
    if value > 1e-300:
        return math.log(value)
    # log erfc(x) = -x^2 - log(x) - log(pi)/2 + log(1 - 1/(2x^2) + 3/(4x^4) - ...), expanded in 1/x^2.
    return (
        -math.log(math.pi) / 2 - math.log(x) - x * x
        - 0.5 * x**-2 + 0.625 * x**-4 - 37.0 / 24.0 * x**-6 + 353.0 / 64.0 * x**-8
    )


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for integer alpha >= 2 and 0 < q < 1 (Mironov et al. 2019, Sec. 3.3, the binomial expansion).

    A_alpha = sum_{i=0..alpha} C(alpha, i) (1-q)^(alpha-i) q^i exp((i^2 - i) / (2 sigma^2)), summed in log space
    (log-sum-exp); the binomial coefficients are exact integers.  Cost: alpha + 1 terms.
    """
    log_q, log_1mq = math.log(q), math.log1p(-q)
    half_inverse_variance = 1.0 / (2.0 * sigma * sigma)
    terms = [
        math.log(math.comb(alpha, i)) + i * log_q + (alpha - i) * log_1mq + (i * i - i) * half_inverse_variance
        for i in range(alpha + 1)
    ]
    peak = max(terms)
    return peak + math.log(math.fsum(math.exp(term - peak) for term in terms))


def _log_a_fractional(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for fractional alpha > 1 and 0 < q < 1 (Mironov et al. 2019, Sec. 3.3, the two series).

    A_alpha = A_0 + A_1, the integrals of the privacy-loss moment over (-inf, z0] and [z0, inf) with
    z0 = sigma^2 log(1/q - 1) + 1/2, each expanded as sum_i C(alpha, i) (...) erfc(...).  The generalised binomial
    coefficients C(alpha, i) change sign for i > alpha; positive and negative terms are summed apart (in log space)
    and subtracted at the end, so the result is the series' value, not a bound.  Stops when both new terms are
    decreasing and ~1e-13 of the sum; returns inf (order unusable) if that takes more than 1000 terms.
    """
    log_q, log_1mq = math.log(q), math.log1p(-q)
    z0 = sigma * sigma * math.log(1.0 / q - 1.0) + 0.5
    scale = math.sqrt(2.0) * sigma
    positive, negative = -math.inf, -math.inf
    log_abs_coefficient, sign = 0.0, 1.0  # C(alpha, 0) = 1
    last_0 = last_1 = -math.inf
    for i in range(_SERIES_MAX_TERMS):
        if i > 0:
            factor = (alpha - i + 1) / i
            log_abs_coefficient += math.log(abs(factor))
            sign = sign if factor > 0 else -sign
        j = alpha - i
        log_0 = (
            log_abs_coefficient + i * log_q + j * log_1mq + (i * i - i) / (2 * sigma * sigma)
            + math.log(0.5) + _log_erfc((i - z0) / scale)
        )
        log_1 = (
            log_abs_coefficient + j * log_q + i * log_1mq + (j * j - j) / (2 * sigma * sigma)
            + math.log(0.5) + _log_erfc((z0 - j) / scale)
        )
        pair = _log_add(log_0, log_1)
        if sign > 0:
            positive = _log_add(positive, pair)
        else:
            negative = _log_add(negative, pair)
        if log_0 < last_0 and log_1 < last_1 and max(log_0, log_1) < positive - _SERIES_TAIL_LOG:
            return _log_sub(positive, negative)
        last_0, last_1 = log_0, log_1
    return math.inf


def _check_sampled_gaussian(sample_rate: float, noise_multiplier: float, steps: int) -> None:
    """Raise ValueError unless 0 <= sample_rate <= 1, noise_multiplier >= 0 and steps is an integer >= 0."""
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(
            f"sample_rate must be in [0, 1] (the probability each example is in a batch), got {sample_rate!r}"
        )
    if not 0.0 <= noise_multiplier < math.inf:
        raise ValueError(
            f"noise_multiplier must be a finite number >= 0 (noise std / clip norm), got {noise_multiplier!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")


def rdp_sampled_gaussian(
    sample_rate: float, noise_multiplier: float, steps: int, orders: Sequence[float] = DEFAULT_ORDERS
) -> list[float]:
    """RDP epsilon(alpha) of ``steps`` rounds of the Poisson-subsampled Gaussian mechanism, one per order alpha.

    Each round includes every example independently with probability ``sample_rate`` (q) and adds Gaussian noise
    of standard deviation ``noise_multiplier`` (sigma) times the L2 sensitivity (the clip norm).  One round has RDP
    log(A_alpha) / (alpha - 1) (Mironov, Talwar, Zhang 2019, arXiv:1908.10530, Theorem 4 and Sec. 3.3); rounds
    compose by adding RDP, so the result is ``steps`` times that.  Integer orders use the exact binomial
    expansion (log-sum-exp); fractional orders use the paper's two convergent series (erfc-weighted), evaluated
    to ~1e-13 relative, signs included as in the paper (recent ``dp_accounting`` adds the terms' absolute values
    instead, an upper bound that can be a few percent higher at orders below 2).  Special cases: q = 0 gives 0;
    q = 1 is the plain Gaussian mechanism, alpha / (2 sigma^2) per round; sigma = 0 (with q > 0) gives inf; a
    fractional order whose series does not converge gives inf.

    Cost: O(alpha) floating-point operations per integer order (about 3,000 terms for :data:`DEFAULT_ORDERS`).
    Raises ValueError for q outside [0, 1], sigma < 0 or not finite, steps not an integer >= 0, or an order <= 1.
    """
    _check_sampled_gaussian(sample_rate, noise_multiplier, steps)
    orders = [float(alpha) for alpha in orders]
    for alpha in orders:
        if not 1.0 < alpha < math.inf:
            raise ValueError(f"RDP orders must be finite numbers > 1, got {alpha!r}")
    q, sigma = float(sample_rate), float(noise_multiplier)
    result = []
    for alpha in orders:
        if q == 0.0 or steps == 0:
            per_step = 0.0
        elif sigma == 0.0:
            per_step = math.inf
        elif q == 1.0:
            per_step = alpha / (2.0 * sigma * sigma)
        elif alpha.is_integer():
            per_step = _log_a_integer(q, sigma, int(alpha)) / (alpha - 1.0)
        else:
            per_step = _log_a_fractional(q, sigma, alpha) / (alpha - 1.0)
        result.append(steps * max(per_step, 0.0))
    return result


def _epsilon_from_rdp(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """The smallest epsilon, and the order attaining it, of (epsilon, delta)-DP implied by RDP at these orders.

    Per order: epsilon = rdp + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1) (Canonne,
    Kamath, Steinke 2020, arXiv:2004.00010, Proposition 12), or 0 where delta >= sqrt(1 - exp(-rdp)) (total
    variation <= sqrt(1 - exp(-KL)), Bretagnolle-Huber, and KL <= RDP; as ``dp_accounting`` does); orders below
    1.01 give inf (the bound is unstable there).  This is never larger than the classic
    epsilon = rdp - log(delta) / (alpha - 1) (Mironov 2017, Proposition 3).
    """
    best, best_order = math.inf, float(orders[0])
    for alpha, value in zip(orders, rdp):
        if value == math.inf:
            epsilon = math.inf
        elif delta * delta + math.expm1(-value) > 0:
            epsilon = 0.0
        elif alpha > _MIN_CONVERSION_ORDER:
            epsilon = value + math.log1p(-1.0 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1.0)
        else:
            epsilon = math.inf
        if epsilon < best:
            best, best_order = epsilon, float(alpha)
    return max(0.0, best), best_order


def _check_delta(delta: float) -> None:
    """Raise ValueError unless 0 < delta < 1."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1) (typically well below 1 / number of examples), got {delta!r}")


def epsilon_spent(sample_rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """Epsilon of (epsilon, delta)-DP after ``steps`` rounds of DP-SGD with Poisson sampling (add/remove one example).

    The RDP of :func:`rdp_sampled_gaussian` at :data:`DEFAULT_ORDERS`, converted with the improved bound of
    Canonne, Kamath, Steinke 2020 (arXiv:2004.00010, Prop. 12; the conversion TF Privacy / ``dp_accounting`` and
    Opacus use) and minimised over the orders.  Reproduces TF Privacy's ``compute_dp_sgd_privacy`` (same orders,
    same conversion).  Returns inf when ``noise_multiplier`` is 0 (and q, steps > 0), 0.0 when q or steps is 0.

    Cost: a few milliseconds.  Raises ValueError for q outside [0, 1], a negative noise multiplier, steps not an
    integer >= 0, or delta outside (0, 1).
    """
    _check_delta(delta)
    rdp = rdp_sampled_gaussian(sample_rate, noise_multiplier, steps, DEFAULT_ORDERS)
    return _epsilon_from_rdp(DEFAULT_ORDERS, rdp, delta)[0]


def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier sigma (to 1e-3 relative) for which :func:`epsilon_spent` <= ``epsilon``.

    Epsilon decreases in sigma (extra Gaussian noise is post-processing), so the answer is found by bracketing
    (doubling or halving from 1) and bisection; the value returned meets the target and is within a factor
    1 + 1e-3 of the smallest one that does.  Cost: about 20 evaluations of :func:`epsilon_spent`.

    Raises ValueError (saying which input and why) for epsilon not a finite number > 0, delta outside (0, 1),
    sample_rate outside (0, 1], steps not an integer >= 1, or an epsilon not reachable with sigma in [1e-6, 1e6].
    """
    if not 0.0 < epsilon < math.inf:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    _check_delta(delta)
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1] (batch size / data set size), got {sample_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")

    def meets(sigma: float) -> bool:
        """Whether noise multiplier ``sigma`` keeps epsilon within the target."""
        return epsilon_spent(sample_rate, sigma, steps, delta) <= epsilon

    low, high = 1.0, 1.0
    if meets(high):
        while meets(low):
            if low <= _SIGMA_FLOOR:
                return low
            high, low = low, low / 2.0
    else:
        while not meets(high):
            if high >= _SIGMA_CEILING:
                # With RDP -> 0 the conversion still costs min over orders of log1p(-1/a) - log(delta a)/(a - 1).
                floor = _epsilon_from_rdp(DEFAULT_ORDERS, [1.0] * len(DEFAULT_ORDERS), delta)[0] - 1.0
                raise ValueError(
                    f"epsilon={epsilon} at delta={delta} is out of reach for sample_rate={sample_rate} over "
                    f"{steps} steps even with noise_multiplier={_SIGMA_CEILING:g} (at this delta the RDP orders "
                    f"used, up to {max(DEFAULT_ORDERS):g}, cannot show an epsilon below about {floor:.3g}); allow "
                    "a larger epsilon or delta, or take fewer steps or a smaller sample rate"
                )
            low, high = high, high * 2.0
    while high - low > _SIGMA_RELATIVE_TOLERANCE * high:
        middle = (low + high) / 2.0
        if meets(middle):
            high = middle
        else:
            low = middle
    return high
