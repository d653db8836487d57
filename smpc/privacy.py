"""Differential privacy bookkeeping: an RDP accountant for DP-SGD, a per-data-set budget ledger, randomized response.

Three independent parts, all pure Python (no network, no shares):

1. **Rényi-DP accountant** for the Poisson-subsampled Gaussian mechanism (the noise of DP-SGD):
   :func:`rdp_sampled_gaussian`, :func:`epsilon_spent`, :func:`noise_multiplier_for`.  RDP per Mironov, Talwar
   and Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (2019, arXiv:1908.10530), composed
   over steps by adding RDP, converted to (epsilon, delta) with the improved bound of Canonne, Kamath and Steinke
   (2020, arXiv:2004.00010, Proposition 12; also Asoodeh et al. 2020, arXiv:2001.05990, Eq. 20, and Balle et al.
   2020, "Hypothesis testing interpretations and Rényi DP", Theorem 21), as Google's ``dp_accounting`` (TF
   Privacy) and Opacus do.  Adjacency: add or remove one example.
2. **Budget ledger** (:class:`Ledger`): the (epsilon, delta) each run spent on a data set, keyed by
   :func:`dataset_id` (the SHA-256 of the data file), summed under basic composition and refused past a budget
   (:class:`BudgetExceeded`).
3. **Randomized response** (Warner 1965): :func:`randomized_response`, :func:`randomized_response_estimate`,
   :func:`randomized_response_epsilon`; its coins come from the operating system's cryptographic generator.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import math
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smpc.files import open_private, write_private

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
# The ledger lets spent + requested exceed the budget by this relative amount: float sums such as 0.1 + 0.2
# would otherwise refuse a request that spends the budget exactly.
_BUDGET_SLACK = 1e-12
#: Ledger file format version.
LEDGER_FORMAT = 1
# Bits of the uniform variate that decides randomized response; probabilities are exact at this resolution.
_COIN_BITS = 53


# ---------------------------------------------------------------------------------------------------------------
# Rényi-DP accountant
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Budget ledger
# ---------------------------------------------------------------------------------------------------------------


class BudgetExceeded(ValueError):
    """A privacy charge that would take a data set past its (epsilon, delta) budget; the message says what to do."""


def dataset_id(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview) -> str:
    """The identity of a data set: the SHA-256 (hex) of its file's bytes.

    A ``str`` or path-like is read as a file path (in 1 MiB chunks); ``bytes``-like values are hashed as they
    are.  Identical data under another name shares its budget; changing a single byte makes a new data set.
    Raises OSError if the file cannot be read, TypeError for anything else.
    """
    digest = hashlib.sha256()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        digest.update(path_or_bytes)
        return digest.hexdigest()
    if isinstance(path_or_bytes, (str, os.PathLike)):
        with open(path_or_bytes, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    raise TypeError(f"dataset_id takes a file path or bytes, got {type(path_or_bytes).__name__}")


def _check_dataset(dataset: str) -> None:
    """Raise ValueError unless ``dataset`` is a non-empty string."""
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty string (see dataset_id), got {dataset!r}")


def _check_charge(epsilon: float, delta: float, budget: tuple[float, float]) -> tuple[float, float]:
    """Validate a request and a budget; return the budget as two floats.  Raises ValueError naming the bad value."""
    if isinstance(epsilon, bool) or not 0.0 <= epsilon < math.inf:
        raise ValueError(f"epsilon to charge must be a finite number >= 0, got {epsilon!r}")
    if isinstance(delta, bool) or not 0.0 <= delta < 1.0:
        raise ValueError(f"delta to charge must be in [0, 1), got {delta!r}")
    try:
        budget_epsilon, budget_delta = (float(value) for value in budget)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a pair (epsilon, delta), got {budget!r}") from None
    if not 0.0 <= budget_epsilon < math.inf or not 0.0 <= budget_delta < 1.0:
        raise ValueError(f"budget must be (epsilon >= 0 finite, delta in [0, 1)), got {budget!r}")
    return budget_epsilon, budget_delta


class Ledger:
    """The privacy spent on each data set, kept in one JSON file, refused past a budget.

    File layout: ``{"format": 1, "entries": [{"dataset", "epsilon", "delta", "what", "time"}, ...]}``; ``dataset``
    is :func:`dataset_id` of the data, ``time`` an ISO-8601 UTC timestamp.  A missing file is an empty ledger.
    Totals use basic composition (epsilons add, deltas add), which holds whatever the runs were.

    Intended use: **charge before the run** (``charge`` reserves the run's (epsilon, delta), from
    :func:`epsilon_spent` with the planned steps, and raises :class:`BudgetExceeded` to refuse it before any
    data is touched).  A run that fails midway stays charged: checkpoints, logs or a partial model may already
    have been released, so refunding would be unsafe.  ``check`` answers "would this fit?" without recording
    (for planning, e.g. validating options); it is no reservation, so a run must still ``charge``.

    Each charge is atomic and serialised: the read-check-write runs under an exclusive ``flock`` on
    ``<file>.lock`` (other processes wait), and the file is replaced by writing a temporary file in the same
    directory, fsyncing it, renaming it over the ledger and fsyncing the directory, so after a crash the file is
    the old or the new ledger, never a mix.  POSIX only (``fcntl``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """A ledger kept in the JSON file ``path`` (created on the first charge)."""
        self.path = Path(path)

    def __repr__(self) -> str:
        """Ledger('<path>')."""
        return f"Ledger({str(self.path)!r})"

    def _read(self) -> list[dict[str, Any]]:
        """The entries in the file ([] when it is absent).  Raises ValueError naming the file if it is malformed."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"privacy ledger {self.path} is not valid JSON ({error}); restore it from a backup"
            ) from None
        if not isinstance(document, dict) or document.get("format") != LEDGER_FORMAT or not isinstance(
            document.get("entries"), list
        ):
            raise ValueError(
                f"privacy ledger {self.path} is not a format-{LEDGER_FORMAT} ledger "
                '(expected {"format": 1, "entries": [...]}); restore it from a backup'
            )
        for index, entry in enumerate(document["entries"]):
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("dataset"), str)
                and isinstance(entry.get("what"), str)
                and isinstance(entry.get("time"), str)
                and all(
                    isinstance(entry.get(key), (int, float)) and not isinstance(entry.get(key), bool)
                    for key in ("epsilon", "delta")
                )
                and 0.0 <= entry["epsilon"] < math.inf
                and 0.0 <= entry["delta"] <= 1.0
            ):
                raise ValueError(
                    f"privacy ledger {self.path} has a malformed entry #{index} (needs dataset, what, time strings, "
                    "epsilon >= 0 and delta in [0, 1]); restore it from a backup"
                )
        return document["entries"]

    def _write(self, entries: list[dict[str, Any]]) -> None:
        """Replace the file atomically by one holding ``entries`` (temporary file, fsync, rename, fsync dir)."""
        text = json.dumps({"format": LEDGER_FORMAT, "entries": entries}, indent=1, allow_nan=False) + "\n"
        write_private(self.path, lambda handle: handle.write(text.encode("utf-8")), durable=True)

    def _locked(self) -> Any:
        """Open (creating) ``<file>.lock`` and take an exclusive flock on it; closing the handle releases it."""
        handle = open_private(self.path.with_name(self.path.name + ".lock"), "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        return handle

    @staticmethod
    def _total(entries: list[dict[str, Any]], dataset: str) -> tuple[float, float]:
        """(sum of epsilons, sum of deltas) of the entries for ``dataset``, summed exactly (fsum)."""
        mine = [entry for entry in entries if entry["dataset"] == dataset]
        return math.fsum(entry["epsilon"] for entry in mine), math.fsum(entry["delta"] for entry in mine)

    def _refuse_if_over(
        self, entries: list[dict[str, Any]], dataset: str, epsilon: float, delta: float, budget: tuple[float, float]
    ) -> None:
        """Raise BudgetExceeded if spent + (epsilon, delta) exceeds ``budget`` in epsilon or in delta."""
        budget_epsilon, budget_delta = _check_charge(epsilon, delta, budget)
        spent_epsilon, spent_delta = self._total(entries, dataset)
        over_epsilon = spent_epsilon + epsilon > budget_epsilon * (1.0 + _BUDGET_SLACK)
        over_delta = spent_delta + delta > budget_delta * (1.0 + _BUDGET_SLACK)
        if over_epsilon or over_delta:
            which = " and ".join(name for name, over in (("epsilon", over_epsilon), ("delta", over_delta)) if over)
            raise BudgetExceeded(
                f"privacy budget of data set {dataset} exceeded in {which} (ledger {self.path}): spent so far "
                f"epsilon={spent_epsilon:.6g}, delta={spent_delta:.3g}; this request epsilon={epsilon:.6g}, "
                f"delta={delta:.3g}; budget epsilon={budget_epsilon:.6g}, delta={budget_delta:.3g}. "
                "To go ahead, spend less (a larger noise multiplier, fewer steps or a smaller sample rate; "
                "see smpc.privacy.noise_multiplier_for), or use fresh data; raise the budget only if the data "
                "owner agrees."
            )

    def spent(self, dataset: str) -> tuple[float, float]:
        """(total epsilon, total delta) charged to ``dataset`` so far, under basic composition.

        Raises ValueError naming the file if the ledger is malformed.
        """
        return self._total(self._read(), dataset)

    def check(self, dataset: str, epsilon: float, delta: float, budget: tuple[float, float]) -> None:
        """Raise :class:`BudgetExceeded` if charging (epsilon, delta) to ``dataset`` would pass ``budget``.

        Records nothing (see the class docstring for when to use it).

        Raises ValueError for a negative or non-finite request, a malformed budget or a malformed ledger file.
        """
        _check_dataset(dataset)
        self._refuse_if_over(self._read(), dataset, epsilon, delta, budget)

    def charge(self, dataset: str, epsilon: float, delta: float, what: str, budget: tuple[float, float]) -> None:
        """Charge (epsilon, delta) of ``dataset`` to ``what``; or raise :class:`BudgetExceeded`, recording nothing.

        ``budget`` is the data set's total (epsilon, delta) budget; the charge is refused when the spent total
        plus this request exceeds it in epsilon or in delta.  Atomic and serialised across processes (see the
        class docstring).  Raises ValueError for a bad request or budget or a malformed ledger file.
        """
        _check_dataset(dataset)
        if not isinstance(what, str):
            raise ValueError(f"what must be a string describing the run, got {what!r}")
        with self._locked():
            entries = self._read()
            self._refuse_if_over(entries, dataset, epsilon, delta, budget)
            entry = {
                "dataset": dataset,
                "epsilon": float(epsilon),
                "delta": float(delta),
                "what": what,
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            self._write(entries + [entry])


# ---------------------------------------------------------------------------------------------------------------
# Randomized response
# ---------------------------------------------------------------------------------------------------------------


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
