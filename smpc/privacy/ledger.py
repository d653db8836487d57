"""The privacy-budget ledger (:class:`Ledger`): the (epsilon, delta) each run spent on a data set, keyed by
:func:`dataset_id` (the SHA-256 of the data file), summed under basic composition and refused past a budget
(:class:`BudgetExceeded`).  Pure Python: no network, no shares.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from smpc.files import open_private, write_private

# The ledger lets spent + requested exceed the budget by this relative amount: float sums such as 0.1 + 0.2
# would otherwise refuse a request that spends the budget exactly.
_BUDGET_SLACK = 1e-12
#: Ledger file format version.
LEDGER_FORMAT = 1


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
