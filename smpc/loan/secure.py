"""Training on shares: the joint standardiser, mini-batch SGD in the public batch order (with checkpoints and
the divergence stop), and the truncation budget check.  Differential privacy is ``dp_training``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

import smpc.nn as snn
from protocols import TruncationBudgetError
from smpc.loan.config import TrainConfig
from smpc.loan.data import PartyData, batch_order, torch_model
from smpc.loan.dp_training import train_dp
from smpc.loan.metrics import accuracy, roc_auc
from smpc.loan.model_files import save_shares
from smpc.loan.multiclass import class_metrics, class_probabilities, model_input, training_targets
from smpc.loan.progress import progress_line
from smpc.loan.results import PartyResult
from smpc.loan.resume import resume, save_checkpoint
from smpc.optim import SGD
from smpc.session import Session
from smpc.tensor import SharedTensor, cat

#: Added to the joint variance before the inverse square root, so a constant column cannot divide by zero.
VARIANCE_FLOOR = 1e-4


def train_secure(session: Session, config: TrainConfig, data: PartyData, progress: Callable[[str], None] | None,
                 start: float) -> PartyResult:
    """Secure mode on one party: share the rows, standardise, train, predict party 0's test rows, write
    the model shares and reveal the weights where asked."""
    rank, n = session.rank, session.world_size
    n_numeric = len(data.schema.numeric)
    features = cat([session.share(data.features if rank == b else None, owner=b) for b in range(n)])
    targets = training_targets(data.labels, data.schema)  # 0/1 labels, or one-hot rows of K classes
    labels = cat([session.share(targets if rank == b else None, owner=b) for b in range(n)])
    n_rows = features.shape[0]
    check_truncation_budget(session, n_rows, config)
    # Joint initialisation: every party's contribution comes from the OS's CSPRNG (never from --seed,
    # which every party knows), so no one can predict the initial weights.
    model = snn.from_torch(torch_model(data.schema.n_features, config, data.schema.n_outputs), session,
                           owner=None if config.joint_init else 0)
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay)
    result = PartyResult(rank=rank, train_rows=int(n_rows), classes=len(data.schema.classes))
    standardiser: tuple[SharedTensor, SharedTensor] | None = None
    if config.dp_epsilon is not None:
        # Public standardisation: the features are the declared scales' quotients, clipped to [-1, 1];
        # no statistic of the rows leaves MPC, so nothing escapes the accountant.
        result.privacy = train_dp(session, config, model, optimizer, features, labels, data.schema, progress, start)
    else:
        done = 0
        if config.resume:
            done, result.losses, mean, inverse_std = resume(session, config, model, optimizer)
            if progress is not None and rank == 0:
                progress(f"resumed from {config.resume} at batch {done} (shares re-randomised)")
        else:
            mean, inverse_std = joint_standardiser(features, n_numeric)
        standardiser = (mean, inverse_std)
        features = standardise(features, mean, inverse_std)
        _train_steps(session, config, model, optimizer, features, labels, standardiser, done, result.losses,
                     progress, start)
    test_features = session.share(data.test_features if rank == 0 else None, owner=0)
    if standardiser is not None:
        test_features = standardise(test_features, *standardiser)
    if data.schema.classes:
        _test_classes(model, test_features, config, data, result)
    else:
        _test_binary(model, test_features, config, data, result)
    revealed = model.reveal(to=config.reveal_to) if config.reveal_to is not None else None
    if config.out:
        save_shares(Path(config.out), session, model, standardiser, data.schema, config)
    result.stats, result.seconds = session.stats.as_dict(), time.monotonic() - start
    if revealed is not None:
        result.weights = {name: p.detach().double() for name, p in revealed.named_parameters()}
    return result


def _test_binary(model: snn.Module, test_features: SharedTensor, config: TrainConfig, data: PartyData,
                 result: PartyResult) -> None:
    """Party 0's test figures of a binary model: the positive label's probabilities opened to it alone."""
    predictions = model.predict(model_input(test_features, config), to=0)
    if predictions is not None:
        assert data.test_labels is not None
        scores = predictions.reshape(-1).cpu().numpy()
        result.test_rows = len(scores)
        result.auc, result.accuracy = roc_auc(scores, data.test_labels), accuracy(scores, data.test_labels)


def _test_classes(model: snn.Module, test_features: SharedTensor, config: TrainConfig, data: PartyData,
                  result: PartyResult) -> None:
    """Party 0's test figures of a K-class model: macro one-vs-rest AUC and accuracy (``class_probabilities``)."""
    probabilities = class_probabilities(model, test_features, config, to=0)
    if probabilities is not None:
        assert data.test_labels is not None
        result.test_rows = len(probabilities)
        result.auc, result.accuracy = class_metrics(probabilities, data.test_labels)


def joint_standardiser(features: SharedTensor, n_numeric: int) -> tuple[SharedTensor, SharedTensor]:
    """Joint mean and 1/std of the numeric columns (population statistics), kept shared."""
    numeric = features[:, :n_numeric]
    mean = numeric.mean(0)
    mean_square = (numeric * numeric).mean(0)
    variance = mean_square - mean * mean
    return mean, (variance + VARIANCE_FLOOR).rsqrt()


def standardise(features: SharedTensor, mean: SharedTensor, inverse_std: SharedTensor) -> SharedTensor:
    n_numeric = mean.shape[0]
    if n_numeric == 0:
        return features
    scaled = (features[:, :n_numeric] - mean) * inverse_std
    return cat([scaled, features[:, n_numeric:]], dim=1)


def _train_steps(session: Session, config: TrainConfig, model: snn.Module, optimizer: SGD, features: SharedTensor,
                 labels: SharedTensor, standardiser: tuple[SharedTensor, SharedTensor], done: int,
                 losses: list[float], progress: Callable[[str], None] | None, start: float) -> None:
    """Mini-batch SGD on shares in the public seeded batch order, from batch ``done`` (a resumed run) on."""
    n_rows = features.shape[0]
    total_batches = config.epochs * math.ceil(n_rows / config.batch_size)
    # K classes: one-hot targets, cross-entropy of the logits; binary: BCE after the final Sigmoid.
    criterion = snn.CrossEntropyLoss() if labels.dim() == 2 else snn.BCELoss()
    start_step, step = done, 0
    for epoch in range(config.epochs):
        for rows in batch_order(n_rows, epoch, config):
            step += 1
            if step <= start_step:
                continue  # done before the checkpoint we resumed from
            index = torch.from_numpy(rows)
            optimizer.zero_grad()
            targets = labels[index] if labels.dim() == 2 else labels[index].reshape(-1, 1)
            loss = criterion(model(model_input(features[index], config)), targets)
            loss.backward()
            optimizer.step()
            done += 1
            value = loss.value(to=0) if config.show_loss else None
            if value is not None:
                losses.append(value)
                check_divergence(losses, done, config)
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total_batches:
                save_checkpoint(session, config, done, model, optimizer, *standardiser, losses)
            if progress is not None and session.rank == 0 and (done % 10 == 0 or done == total_batches):
                shown = f"loss {value:.4f}" if value is not None else "loss hidden (--show-loss)"
                progress(progress_line(epoch, config, done, total_batches, start_step, start, shown))


class DivergedError(ValueError):
    """The training loss is no longer finite or has grown far past where it started."""


#: The loss has diverged when it is not finite, or when the mean of the last DIVERGED_WINDOW batches is more
#: than DIVERGED_FACTOR times the first batch's (the untrained model's) loss.  BCE on shares is bounded (its
#: logs are clamped at 2^-frac_bits), so a blow-up shows as a loss stuck far above where training started.
DIVERGED_WINDOW = 10
DIVERGED_FACTOR = 2.0


def check_divergence(losses: list[float], batch: int, config: TrainConfig) -> None:
    """Stop (party 0, which alone sees the loss) when the loss diverges; the others are told by the abort."""
    value = losses[-1]
    recent = losses[-DIVERGED_WINDOW:]
    diverged = not math.isfinite(value) or (
        len(losses) > DIVERGED_WINDOW and sum(recent) / len(recent) > DIVERGED_FACTOR * losses[0])
    if diverged:
        raise DivergedError(
            f"the training loss diverged by batch {batch}: mean {sum(recent) / len(recent):.4g} over the last "
            f"{len(recent)} batches against {losses[0]:.4g} at the first; lower --lr (now {config.lr:g})")


def check_truncation_budget(session: Session, n_rows: int, config: TrainConfig) -> None:
    """Refuse, before training, a run whose local-shift truncations would exceed the session's failure budget.

    The run truncates at least one element per example per batch (the model's first product), so
    epochs x rows x p is a lower bound on its expected failures (p per element: 2^(product_bits+1-64));
    when that bound is over the budget the run is refused here.  Every truncation is also checked as it
    happens (``Party.check_truncation_budget``), so nothing the bound misses can slip through.  The dealer
    method is exact and never refused.
    """
    party = session.party
    if party.truncation != "local":
        return
    per_element = session.encoding.local_shift_failure_probability()
    expected = config.epochs * n_rows * per_element
    if expected > party.failure_budget:
        raise TruncationBudgetError(
            f"this run would make at least {config.epochs * n_rows} local-shift truncations, {expected:.3g} expected "
            f"failures ({per_element:.3g} each), over the budget of {party.failure_budget:g}; use the dealer's "
            "truncation (exact), or fewer epochs or rows")
