"""DP-SGD of the loan model on shares (logistic regression), with secret Poisson sampling."""

from __future__ import annotations

import math
from collections.abc import Callable

import protocols
import smpc.nn as snn
from smpc import privacy
from smpc.autograd import no_grad
from smpc.loan.config import TrainConfig
from smpc.loan.progress import progress_line
from smpc.loan.results import PrivacySpent
from smpc.loan.schema import Schema
from smpc.optim import SGD
from smpc.session import Session
from smpc.tensor import SharedTensor


def train_dp(session: Session, config: TrainConfig, model: snn.Module, optimizer: SGD, features: SharedTensor,
             labels: SharedTensor, schema: Schema, progress: Callable[[str], None] | None,
             start: float) -> PrivacySpent:
    """DP-SGD on shares (logistic regression): every step, each training row takes part independently with
    probability q = batch size / rows (secret Poisson sampling: no party knows which rows did, as the
    accountant assumes), its gradient clipped to the clip norm; joint Gaussian noise is added to the sum, which
    is divided by the expected batch size q N.  Every step computes on all rows (the sample is secret), so a
    step costs about what a batch of N rows would.  Returns the privacy figures of the run."""
    n_rows = features.shape[0]
    steps_per_epoch = math.ceil(n_rows / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    rate = protocols.representable_probability(min(1.0, config.batch_size / n_rows))
    assert config.dp_epsilon is not None
    sigma = privacy.noise_multiplier_for(config.dp_epsilon, config.dp_delta, rate, total_steps)
    limits = privacy.row_limits(features, config.dp_clip, schema.max_square_norm)
    targets = labels.reshape(-1)
    linear = model.children()[0]
    if not isinstance(linear, snn.Linear) or linear.bias is None:
        raise TypeError("DP-SGD here trains logistic regression: a model whose first layer is Linear with a bias")
    done = 0
    for epoch in range(config.epochs):
        sample, _ = privacy.poisson_sample(session, steps_per_epoch, n_rows, rate)
        for step in range(steps_per_epoch):
            optimizer.zero_grad()
            with no_grad():
                error = model(features).reshape(-1) - targets
            linear.weight.grad, linear.bias.grad = privacy.clipped_noisy_gradient(
                session, features, error, limits, config.dp_clip, sigma, sample=sample[step],
                denominator=rate * n_rows)
            optimizer.step()
            done += 1
            if progress is not None and session.rank == 0 and (done % 10 == 0 or done == total_steps):
                spent = privacy.epsilon_spent(rate, sigma, done, config.dp_delta)
                shown = f"epsilon spent {spent:.3f} of {config.dp_epsilon:g}"
                progress(progress_line(epoch, config, done, total_steps, 0, start, shown))
    return PrivacySpent(epsilon_spent=privacy.epsilon_spent(rate, sigma, total_steps, config.dp_delta),
                        delta=config.dp_delta, noise_multiplier=sigma, sampling_rate=rate)
