"""``--mode fedavg`` of the loan job on one bank: standardise (joint statistics, or under differential privacy
the declared scales alone), then ``smpc.federated.fedavg``; party 0 evaluates the model on its test rows."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import smpc.nn as snn
from smpc import federated, privacy
from smpc.loan.config import TrainConfig
from smpc.loan.data import PartyData, torch_model
from smpc.loan.metrics import accuracy, roc_auc
from smpc.loan.model_files import save_shares
from smpc.loan.results import PartyResult, PrivacySpent
from smpc.loan.secure import VARIANCE_FLOOR
from smpc.session import Session


def train_fedavg(session: Session, config: TrainConfig, data: PartyData, progress: Callable[[str], None] | None,
                 start: float) -> PartyResult:
    """``--mode fedavg`` on one bank: standardise with jointly aggregated statistics (under differential
    privacy, with the declared scales alone: the statistics would be a release outside the accountant), then
    ``fedavg``."""
    rank = session.rank
    n_numeric = len(data.schema.numeric)
    if config.dp_epsilon is None:
        mean, inverse_std = _aggregated_standardiser(session, data.features, n_numeric)
    else:
        mean, inverse_std = np.zeros(n_numeric), np.ones(n_numeric)
    features = data.features.copy()
    features[:, :n_numeric] = (features[:, :n_numeric] - mean) * inverse_std
    evaluate = None
    if rank == 0:
        assert data.test_features is not None and data.test_labels is not None
        test, test_labels = data.test_features.copy(), data.test_labels
        test[:, :n_numeric] = (test[:, :n_numeric] - mean) * inverse_std

        def evaluate(model: torch.nn.Module) -> dict:
            with torch.no_grad():
                scores = model(torch.from_numpy(test)).reshape(-1).numpy()
            return {"auc": roc_auc(scores, test_labels), "accuracy": accuracy(scores, test_labels)}

    sigma = None
    if config.dp_epsilon is not None:  # every bank takes part in every round: sampling rate 1
        sigma = privacy.noise_multiplier_for(config.dp_epsilon, config.dp_delta, 1.0, config.rounds)
    outcome = federated.fedavg(
        session, torch_model(data.schema.n_features, config), features, data.labels, rounds=config.rounds,
        local_steps=config.local_steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
        keep_shared=config.keep_shared, dp_noise_multiplier=sigma or 0.0, clip=config.dp_clip,
        evaluate=evaluate, progress=progress,
        epsilon_after=None if sigma is None else
        (lambda done: privacy.epsilon_spent(1.0, sigma, done, config.dp_delta)))
    result = PartyResult(rank=rank, train_rows=len(features), rounds=outcome.rounds)
    if sigma is not None:
        result.privacy = PrivacySpent(epsilon_spent=privacy.epsilon_spent(1.0, sigma, config.rounds, config.dp_delta),
                                      delta=config.dp_delta, noise_multiplier=sigma, sampling_rate=1.0)
    if outcome.shares is not None:  # kept shared: party 0's test predictions from the shared model
        model = snn.from_torch(torch_model(data.schema.n_features, config), session, owner=0)
        flat, at, shares = outcome.shares, 0, {}
        for name, parameter in model.named_parameters():
            count = math.prod(parameter.shape)
            shares[name] = flat[at : at + count].reshape(tuple(parameter.shape)).local_share
            at += count
        model.load_state_shares(shares)
        test_shared = session.share(test if rank == 0 else None, owner=0)
        predictions = model.predict(test_shared, to=0)
        if config.out:
            standardiser = None if config.dp_epsilon is not None else (
                session.public(torch.from_numpy(mean)), session.public(torch.from_numpy(inverse_std)))
            save_shares(Path(config.out), session, model, standardiser, data.schema, config)
        if rank == 0:
            assert predictions is not None and data.test_labels is not None
            scores = predictions.reshape(-1).numpy()
            result.test_rows = len(scores)
            result.auc, result.accuracy = roc_auc(scores, data.test_labels), accuracy(scores, data.test_labels)
    elif rank == 0:
        assert data.test_labels is not None
        result.test_rows = len(data.test_labels)
        result.auc, result.accuracy = outcome.rounds[-1]["auc"], outcome.rounds[-1]["accuracy"]
    result.stats, result.seconds = session.stats.as_dict(), time.monotonic() - start
    return result


def _aggregated_standardiser(session: Session, features: np.ndarray, n_numeric: int
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Joint mean and 1/std of the numeric columns from every bank's sums, aggregated on shares: only the
    totals are revealed (fedavg reveals the model every round anyway)."""
    count = sum(federated.public_row_counts(session, len(features)))
    # Each bank's contribution to the joint means (its sums over the total count): schema-scaled values, so
    # well inside the fixed-point range.
    sums = np.concatenate([features[:, :n_numeric].sum(0), (features[:, :n_numeric] ** 2).sum(0)]) / count
    total = None
    for bank in range(session.world_size):
        part = session.share(torch.from_numpy(sums) if session.rank == bank else None, owner=bank)
        total = part if total is None else total + part
    assert total is not None
    opened = total.reveal().numpy()
    mean, mean_square = opened[:n_numeric], opened[n_numeric:]
    return mean, 1.0 / np.sqrt(np.maximum(mean_square - mean * mean, 0.0) + VARIANCE_FLOOR)
