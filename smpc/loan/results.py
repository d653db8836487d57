"""What the loan job returns: one ``PartyResult`` per party, the plain reference's ``PlainResult``, and the
``--report`` document built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class PrivacySpent:
    """The privacy figures of a differentially private run (the accountant's, for the whole run)."""

    epsilon_spent: float
    delta: float
    noise_multiplier: float
    sampling_rate: float


@dataclass
class PartyResult:
    """What one party knows at the end of the job.  Only party 0 (the model owner) has test figures; only the
    party the weights were revealed to has ``weights``."""

    rank: int
    train_rows: int
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    test_rows: int | None = None
    auc: float | None = None
    accuracy: float | None = None
    weights: dict[str, torch.Tensor] | None = None
    privacy: PrivacySpent | None = None
    #: K for a multi-class job (``auc`` is then the macro one-vs-rest ROC AUC), 0 for a binary one.
    classes: int = 0
    #: fedavg: one record per round (round, and on party 0 auc and accuracy; epsilon_spent under DP).
    rounds: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class PlainResult:
    """The plain torch reference's test figures and row counts."""

    auc: float  # binary: ROC AUC; K classes: macro one-vs-rest ROC AUC
    accuracy: float
    train_rows: int
    test_rows: int
    classes: int = 0  # K for a multi-class job, 0 for a binary one


def report(results: list[PartyResult], plain: PlainResult, seconds: float, mode: str) -> dict[str, Any]:
    """The ``--report`` JSON document: secure (or fedavg) figures next to plain, traffic, rows, privacy."""
    owner = results[0]
    document: dict[str, Any] = {
        "secure": {"auc": owner.auc, "accuracy": owner.accuracy},
        "plain": {"auc": plain.auc, "accuracy": plain.accuracy},
        "seconds": seconds,
        "bytes_sent_per_party": [result.stats["bytes_sent"] for result in results],
        "rounds": owner.stats["rounds"],
        "rows": {"train": plain.train_rows, "test": plain.test_rows},
    }
    if plain.classes:  # "auc" is then the macro one-vs-rest ROC AUC over the classes
        document.update(classes=plain.classes, auc="macro one-vs-rest")
    if owner.privacy is not None:
        document.update(epsilon_spent=owner.privacy.epsilon_spent, delta=owner.privacy.delta)
    if mode == "fedavg":  # "secure" then holds the federated model's figures
        document.update(mode="fedavg", rounds_detail=owner.rounds)
    return document


def party_report(result: PartyResult, parties: int, protocol: str, mode: str) -> dict[str, Any]:
    """The ``smpc party --report`` JSON document: what this party knows at the end of its job.

    Keys (every party): ``rank``, ``parties``, ``protocol`` ("replicated" or "dealer"), ``mode`` ("secure" or
    "fedavg"), ``seconds`` (this party's job, from the schema check to its end; connecting not counted),
    ``bytes_sent``, ``bytes_received``, ``messages`` and ``rounds`` (this party's own counters: a party does
    not know the others'), ``rows`` with ``train`` (the training rows of the run: every bank's rows in secure
    mode, where they are shared; this bank's own in fedavg mode).  Party 0, which holds the test rows, adds
    ``rows.test`` and ``secure`` with ``auc`` and ``accuracy`` (the same figures as ``smpc train --report``;
    there is no ``plain`` reference, since nobody holds all the rows); a multi-class job adds ``classes`` (K)
    and ``"auc": "macro one-vs-rest"`` (what ``secure.auc`` then is); with ``--dp-epsilon``, ``epsilon_spent``
    and ``delta``; in fedavg mode party 0 adds ``rounds_detail``.
    """
    document: dict[str, Any] = {
        "rank": result.rank,
        "parties": parties,
        "protocol": protocol,
        "mode": mode,
        "seconds": result.seconds,
        **{key: result.stats.get(key, 0) for key in ("bytes_sent", "bytes_received", "messages", "rounds")},
        "rows": {"train": result.train_rows},
    }
    if result.test_rows is not None:
        document["rows"]["test"] = result.test_rows
        document["secure"] = {"auc": result.auc, "accuracy": result.accuracy}
    if result.classes:
        document.update(classes=result.classes, auc="macro one-vs-rest")
    if result.privacy is not None:
        document.update(epsilon_spent=result.privacy.epsilon_spent, delta=result.privacy.delta)
    if mode == "fedavg" and result.rounds is not None and result.rank == 0:
        document["rounds_detail"] = result.rounds
    return document
