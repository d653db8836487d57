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
    #: fedavg: one record per round (round, and on party 0 auc and accuracy; epsilon_spent under DP).
    rounds: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class PlainResult:
    """The plain torch reference's test figures and row counts."""

    auc: float
    accuracy: float
    train_rows: int
    test_rows: int


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
    if owner.privacy is not None:
        document.update(epsilon_spent=owner.privacy.epsilon_spent, delta=owner.privacy.delta)
    if mode == "fedavg":  # "secure" then holds the federated model's figures
        document.update(mode="fedavg", rounds_detail=owner.rounds)
    return document
