"""The loan job: banks train a model together on their joint rows; nobody sees another bank's rows or the
model's weights.

Every party runs ``train_party``.  Party ``b`` encodes only its own rows with the public schema and
secret-shares them; numeric columns are standardised under MPC with means and deviations computed jointly
(no bank reveals its own); the model (logistic regression, or a one-hidden-layer MLP) is trained on shares
with hand-derived gradients; party 0, the model owner, also holds the test rows and receives only the
test predictions.  ``train_plain`` trains the same model in plain torch with the same split, initial weights,
batch order and hyperparameters, as the reference the secure model is compared with.
"""

from __future__ import annotations

import base64
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import protocols
import smpc.nn as snn
from protocols import TruncationBudgetError
from smpc import checkpoint, dp, federated, privacy
from smpc.dataset import (DataError, Schema, accuracy, embedded_dataset, embedded_schema, load_csv, roc_auc,
                          split_rows)
from smpc.files import open_private, write_private
from smpc.optim import SGD
from smpc.session import Session
from smpc.tensor import SharedTensor

#: Model file format version written by ``--out``.
MODEL_FORMAT = 1
#: Added to the joint variance before the inverse square root, so a constant column cannot divide by zero.
_VARIANCE_FLOOR = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    """Everything the job needs besides the session; public, identical on every party."""

    data: str | None = None  # CSV path; None = the embedded German Credit data
    label: str = "creditability"
    positive: str | None = "bad"
    schema: str | None = None  # public schema file; None = inferred from the data
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 32
    hidden: int = 0  # 0 = logistic regression
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    test_fraction: float = 0.3
    max_rows: int | None = None  # use only the first rows (quick runs and tests)
    joint_init: bool = False
    show_loss: bool = False
    audit: str | None = None  # directory for audit logs
    out: str | None = None  # directory for each party's model shares
    reveal_to: int | None = None
    own_rows_only: bool = False  # multi-host: `data` is this party's own file
    checkpoint_every: int = 0  # batches between checkpoints; 0 = none
    checkpoint_dir: str | None = None  # where each party writes its checkpoints
    resume: str | None = None  # continue from the newest checkpoint every party committed in this directory
    mode: str = "secure"  # "secure": train on shares; "fedavg": local plain training, secure aggregation
    rounds: int = 10  # fedavg rounds
    local_steps: int = 10  # fedavg: SGD steps per bank per round
    keep_shared: bool = False  # fedavg: the final model stays shared
    split_by: str | None = None  # deal training rows to banks by this column (skewed) instead of at random
    dp_epsilon: float | None = None  # differential privacy target over the whole run
    dp_delta: float = 1e-5
    dp_clip: float = 1.0  # per-example gradient (secure) or per-bank update (fedavg) L2 clip

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.hidden < 0:
            raise ValueError("epochs, batch size and learning rate must be positive, hidden non-negative")
        if self.checkpoint_every < 0:
            raise ValueError("--checkpoint-every must be 0 (off) or a positive number of batches")
        if self.checkpoint_every and not (self.checkpoint_dir or self.resume):
            raise ValueError("--checkpoint-every needs --checkpoint-dir DIR (or --resume DIR)")
        if self.mode not in ("secure", "fedavg"):
            raise ValueError(f"--mode must be secure or fedavg, not {self.mode!r}")
        if self.rounds < 1 or self.local_steps < 1:
            raise ValueError("--rounds and --local-steps must be positive")
        if self.dp_epsilon is not None:
            if not self.dp_epsilon > 0 or not 0 < self.dp_delta < 1 or not self.dp_clip > 0:
                raise ValueError("--dp-epsilon and --dp-clip must be positive and --dp-delta in (0, 1)")
            if self.mode == "secure" and self.hidden:
                raise ValueError("--dp-epsilon in secure mode trains logistic regression only (no --hidden)")
            if self.mode == "secure" and (self.momentum or self.checkpoint_every or self.resume):
                raise ValueError("--dp-epsilon in secure mode runs plain SGD without checkpoints")
            if self.show_loss:
                raise ValueError("--show-loss opens each batch's exact loss outside the privacy accountant (and "
                                 "the divergence stop tells every party a bit about it): it cannot be combined "
                                 "with --dp-epsilon")
            if self.data is not None and self.schema is None:
                raise ValueError("--dp-epsilon needs a declared public schema (--schema FILE, e.g. written by "
                                 "`smpc schema`): one inferred from the rows at run time would release their "
                                 "category sets and magnitudes outside the privacy accountant")
        if self.keep_shared and self.mode != "fedavg":
            raise ValueError("--keep-shared is for --mode fedavg (secure mode never reveals the model)")

    @property
    def checkpoints(self) -> Path | None:
        """Directory checkpoints are written to (the resumed one unless another is given)."""
        chosen = self.checkpoint_dir or self.resume
        return Path(chosen) if chosen else None

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the checkpointed one (the model, data and schedule)."""
        keep = ("data", "label", "positive", "schema", "epochs", "lr", "batch_size", "hidden", "momentum",
                "weight_decay", "seed", "test_fraction", "max_rows", "joint_init", "split_by")
        return {name: getattr(self, name) for name in keep}


# -- data each party holds ----------------------------------------------------------------------------------
@dataclass
class PartyData:
    schema: Schema
    features: np.ndarray  # this party's training rows, encoded
    labels: np.ndarray
    test_features: np.ndarray | None  # party 0 only
    test_labels: np.ndarray | None


def load_schema(config: TrainConfig, header: list[str], rows: list[dict[str, str]]) -> Schema:
    """The public schema: declared (a file), or inferred from the rows.  With differential privacy it must be
    declared (the embedded data ships its own), since an inferred one is computed from the data."""
    if config.schema:
        return Schema.load(config.schema)
    if config.dp_epsilon is not None:
        if config.data is not None:
            raise DataError("differential privacy needs a declared public schema, not one inferred from the rows")
        return Schema.load(embedded_schema())
    return Schema.infer(header, rows, config.label, config.positive)


def encode_rows(config: TrainConfig, schema: Schema, rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``rows``.  Under differential privacy, values outside the declared schema are
    clipped to it instead of refused (an error would tell the other banks something about the rows)."""
    return schema.encode(rows, clip=config.dp_epsilon is not None)


def load_all(config: TrainConfig) -> tuple[Schema, np.ndarray, np.ndarray]:
    """The whole data set (the local simulation's view, and the plain reference's)."""
    header, rows = load_csv(config.data or embedded_dataset())
    if config.max_rows:
        rows = rows[: config.max_rows]
    schema = load_schema(config, header, rows)
    features, labels = encode_rows(config, schema, rows)
    return schema, features, labels


def split_column(config: TrainConfig) -> list[str] | None:
    """The values of ``--split-by``'s column, one per row (None for a random split)."""
    if config.split_by is None:
        return None
    header, rows = load_csv(config.data or embedded_dataset())
    if config.split_by not in header:
        raise DataError(f"--split-by column {config.split_by!r} not found; columns are: {', '.join(header)}")
    if config.max_rows:
        rows = rows[: config.max_rows]
    return [row[config.split_by] for row in rows]


def party_data(config: TrainConfig, rank: int, n_parties: int) -> PartyData:
    """What party ``rank`` holds.  Local runs deal the one file's rows out by the seeded split and each party
    keeps only its share; multi-host runs read this party's own file, party 0 holding out its test rows."""
    if config.own_rows_only:
        header, rows = load_csv(config.data or embedded_dataset())
        schema = load_schema(config, header, rows)
        features, labels = encode_rows(config, schema, rows)
        if rank != 0:
            return PartyData(schema, features, labels, None, None)
        split = split_rows(labels, 1, config.test_fraction, config.seed)
        train = split.banks[0]
        return PartyData(schema, features[train], labels[train], features[split.test], labels[split.test])
    schema, features, labels = load_all(config)
    split = split_rows(labels, n_parties, config.test_fraction, config.seed, by=split_column(config))
    mine = split.banks[rank]
    test = (features[split.test], labels[split.test]) if rank == 0 else (None, None)
    return PartyData(schema, features[mine], labels[mine], *test)


def torch_model(n_features: int, config: TrainConfig) -> torch.nn.Module:
    """The model owner's architecture and seeded initial weights, the same for the plain reference.

    Weights and biases are uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default for Linear, drawn from a
    generator of this call's own: torch's global generator is never touched (parties may be threads).
    """
    if config.hidden:
        model = torch.nn.Sequential(torch.nn.Linear(n_features, config.hidden), torch.nn.Tanh(),
                                    torch.nn.Linear(config.hidden, 1), torch.nn.Sigmoid())
    else:
        model = torch.nn.Sequential(torch.nn.Linear(n_features, 1), torch.nn.Sigmoid())
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                for parameter in (layer.weight, layer.bias):
                    parameter.copy_((torch.rand(parameter.shape, generator=generator) * 2.0 - 1.0) * bound)
    return model.double()


def batch_order(n_rows: int, epoch: int, config: TrainConfig) -> list[np.ndarray]:
    """Public, seeded mini-batch row indices of one epoch."""
    order = np.random.default_rng([config.seed, epoch]).permutation(n_rows)
    return [order[start : start + config.batch_size] for start in range(0, n_rows, config.batch_size)]


# -- the secure job -----------------------------------------------------------------------------------------
class AuditLog:
    """Every value this party learns during the job, one JSON line each: label, tag, count and the raw
    little-endian values (base64).  Masked openings only, by construction; tests check it."""

    def __init__(self, path: Path) -> None:
        self._handle = open_private(path, "w")

    def __call__(self, op: str, tag: int, value: torch.Tensor) -> None:
        data = value.detach().contiguous().numpy()
        self._handle.write(json.dumps({"op": op, "tag": tag, "dtype": str(data.dtype), "count": int(data.size),
                                       "values": base64.b64encode(data.tobytes()).decode("ascii")}) + "\n")

    def close(self) -> None:
        self._handle.close()


def _agree(session: Session, fingerprint: bytes) -> None:
    """Refuse to start unless every party uses the same public schema."""
    party = session.party
    tag = party.next_tag()
    mine = torch.frombuffer(bytearray(fingerprint), dtype=torch.uint8)
    for peer in party.others:
        party.send(peer, tag, mine)
    for peer in party.others:
        if not torch.equal(party.recv(peer, tag, "schema check"), mine):
            raise DataError(f"party {peer} uses a different schema (columns, categories, scales or label); "
                            "give every party the same --schema file")


def _standardiser(session: Session, features: SharedTensor, n_numeric: int) -> tuple[SharedTensor, SharedTensor]:
    """Joint mean and 1/std of the numeric columns (population statistics), kept shared."""
    numeric = features[:, :n_numeric]
    mean = numeric.mean(0)
    mean_square = (numeric * numeric).mean(0)
    variance = mean_square - mean * mean
    return mean, (variance + _VARIANCE_FLOOR).rsqrt()


def _standardise(features: SharedTensor, mean: SharedTensor, inverse_std: SharedTensor) -> SharedTensor:
    n_numeric = mean.shape[0]
    if n_numeric == 0:
        return features
    scaled = (features[:, :n_numeric] - mean) * inverse_std
    return torch.cat([scaled, features[:, n_numeric:]], dim=1)


def train_party(session: Session, config: TrainConfig, progress: Callable[[str], None] | None = None) -> dict:
    """The whole job on one party; returns what this party may know (party 0: test predictions)."""
    start = time.monotonic()
    rank, n = session.rank, session.world_size
    audit = AuditLog(Path(config.audit) / f"audit-party{rank}.jsonl") if config.audit else None
    session.party.audit = audit
    try:
        data = party_data(config, rank, n)
        _agree(session, data.schema.fingerprint())
        if config.mode == "fedavg":
            return _fedavg_party(session, config, data, progress, start)
        n_numeric = len(data.schema.numeric)
        features = torch.cat([session.share(data.features if rank == b else None, owner=b) for b in range(n)])
        labels = torch.cat([session.share(data.labels if rank == b else None, owner=b) for b in range(n)])
        n_rows = features.shape[0]
        check_truncation_budget(session, n_rows, config)
        # Joint initialisation: every party's contribution comes from the OS's CSPRNG (never from --seed,
        # which every party knows), so no one can predict the initial weights.
        model = snn.from_torch(torch_model(data.schema.n_features, config), session,
                               owner=None if config.joint_init else 0)
        optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                        weight_decay=config.weight_decay)
        result: dict[str, Any] = {"rank": rank, "train_rows": int(n_rows)}
        standardiser: tuple[SharedTensor, SharedTensor] | None = None
        if config.dp_epsilon is not None:
            # Public standardisation: the features are the declared scales' quotients, clipped to [-1, 1];
            # no statistic of the rows leaves MPC, so nothing escapes the accountant.
            result.update(_train_dp(session, config, model, optimizer, features, labels, data.schema, progress,
                                    start))
            losses: list[float] = []
        else:
            done, losses = 0, []
            if config.resume:
                done, losses, mean, inverse_std = _resume(session, config, model, optimizer)
                if progress is not None and rank == 0:
                    progress(f"resumed from {config.resume} at batch {done} (shares re-randomised)")
            else:
                mean, inverse_std = _standardiser(session, features, n_numeric)
            standardiser = (mean, inverse_std)
            features = _standardise(features, mean, inverse_std)
            _train_steps(session, config, model, optimizer, features, labels, standardiser, done, losses, progress,
                         start)
        test_features = session.share(data.test_features if rank == 0 else None, owner=0)
        if standardiser is not None:
            test_features = _standardise(test_features, *standardiser)
        predictions = model.predict(test_features, to=0)
        revealed = model.reveal(to=config.reveal_to) if config.reveal_to is not None else None
        if config.out:
            save_shares(Path(config.out), session, model, standardiser, data.schema, config)
        result.update(stats=session.stats.as_dict(), seconds=time.monotonic() - start, losses=losses)
        if rank == 0:
            scores = predictions.reshape(-1).numpy()
            result.update(test_rows=len(scores), auc=roc_auc(scores, data.test_labels),
                          accuracy=accuracy(scores, data.test_labels))
        if revealed is not None:
            result["weights"] = {name: p.detach().double() for name, p in revealed.named_parameters()}
        return result
    finally:
        session.party.audit = None
        if audit is not None:
            audit.close()


def _train_steps(session: Session, config: TrainConfig, model: snn.Module, optimizer: SGD, features: SharedTensor,
                 labels: SharedTensor, standardiser: tuple[SharedTensor, SharedTensor], done: int,
                 losses: list[float], progress: Callable[[str], None] | None, start: float) -> None:
    """Mini-batch SGD on shares in the public seeded batch order, from batch ``done`` (a resumed run) on."""
    n_rows = features.shape[0]
    total_batches = config.epochs * math.ceil(n_rows / config.batch_size)
    criterion = snn.BCELoss()
    start_step, step = done, 0
    for epoch in range(config.epochs):
        for rows in batch_order(n_rows, epoch, config):
            step += 1
            if step <= start_step:
                continue  # done before the checkpoint we resumed from
            index = torch.from_numpy(rows)
            optimizer.zero_grad()
            loss = criterion(model(features[index]), labels[index].reshape(-1, 1))
            loss.backward()
            optimizer.step()
            done += 1
            value = loss.value(to=0) if config.show_loss else None
            if value is not None:
                losses.append(value)
                _check_divergence(losses, done, config)
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total_batches:
                _checkpoint(session, config, done, model, optimizer, *standardiser, losses)
            if progress is not None and session.rank == 0 and (done % 10 == 0 or done == total_batches):
                shown = f"loss {value:.4f}" if value is not None else "loss hidden (--show-loss)"
                progress(_progress_line(epoch, config, done, total_batches, start_step, start, shown))


def _train_dp(session: Session, config: TrainConfig, model: snn.Module, optimizer: SGD, features: SharedTensor,
              labels: SharedTensor, schema: Schema, progress: Callable[[str], None] | None,
              start: float) -> dict[str, Any]:
    """DP-SGD on shares (logistic regression): every step, each training row takes part independently with
    probability q = batch size / rows (secret Poisson sampling: no party knows which rows did, as the
    accountant assumes), its gradient clipped to the clip norm; joint Gaussian noise is added to the sum, which
    is divided by the expected batch size q N.  Every step computes on all rows (the sample is secret), so a
    step costs about what a batch of N rows would.  Returns the privacy figures of the run."""
    n_rows = features.shape[0]
    steps_per_epoch = math.ceil(n_rows / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    rate = protocols.representable_probability(min(1.0, config.batch_size / n_rows))
    sigma = privacy.noise_multiplier_for(config.dp_epsilon, config.dp_delta, rate, total_steps)
    limits = dp.row_limits(features, config.dp_clip, schema.max_square_norm)
    targets = labels.reshape(-1)
    linear = model[0]
    done = 0
    for epoch in range(config.epochs):
        sample, _ = dp.poisson_sample(session, steps_per_epoch, n_rows, rate)
        for step in range(steps_per_epoch):
            optimizer.zero_grad()
            error = model.forward(features, record=False).reshape(-1) - targets
            linear.weight.grad, linear.bias.grad = dp.clipped_noisy_gradient(
                session, features, error, limits, config.dp_clip, sigma, sample=sample[step],
                denominator=rate * n_rows)
            optimizer.step()
            done += 1
            if progress is not None and session.rank == 0 and (done % 10 == 0 or done == total_steps):
                spent = privacy.epsilon_spent(rate, sigma, done, config.dp_delta)
                shown = f"epsilon spent {spent:.3f} of {config.dp_epsilon:g}"
                progress(_progress_line(epoch, config, done, total_steps, 0, start, shown))
    return {"epsilon_spent": privacy.epsilon_spent(rate, sigma, total_steps, config.dp_delta),
            "delta": config.dp_delta, "noise_multiplier": sigma, "sampling_rate": rate}


def _progress_line(epoch: int, config: TrainConfig, done: int, total: int, start_step: int, start: float,
                   shown: str) -> str:
    elapsed = time.monotonic() - start
    left = elapsed / max(done - start_step, 1) * (total - done)
    return (f"epoch {epoch + 1}/{config.epochs}  batch {done}/{total}  {shown}  {elapsed:.0f} s elapsed, "
            f"about {left:.0f} s left")


class DivergedError(ValueError):
    """The training loss is no longer finite or has grown far past where it started."""


#: The loss has diverged when it is not finite, or when the mean of the last DIVERGED_WINDOW batches is more
#: than DIVERGED_FACTOR times the first batch's (the untrained model's) loss.  BCE on shares is bounded (its
#: logs are clamped at 2^-frac_bits), so a blow-up shows as a loss stuck far above where training started.
DIVERGED_WINDOW = 10
DIVERGED_FACTOR = 2.0


def _check_divergence(losses: list[float], batch: int, config: TrainConfig) -> None:
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


# -- federated averaging ------------------------------------------------------------------------------------
def _fedavg_party(session: Session, config: TrainConfig, data: PartyData, progress: Callable[[str], None] | None,
                  start: float) -> dict:
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
        test = data.test_features.copy()
        test[:, :n_numeric] = (test[:, :n_numeric] - mean) * inverse_std

        def evaluate(model: torch.nn.Module) -> dict:
            with torch.no_grad():
                scores = model(torch.from_numpy(test)).reshape(-1).numpy()
            return {"auc": roc_auc(scores, data.test_labels), "accuracy": accuracy(scores, data.test_labels)}

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
    result: dict[str, Any] = {"rank": rank, "stats": session.stats.as_dict(), "train_rows": len(features),
                              "seconds": time.monotonic() - start, "losses": [], "rounds": outcome.rounds}
    if sigma is not None:
        result.update(epsilon_spent=privacy.epsilon_spent(1.0, sigma, config.rounds, config.dp_delta),
                      delta=config.dp_delta, noise_multiplier=sigma)
    if outcome.shares is not None:  # kept shared: party 0's test predictions from the shared model
        model = snn.from_torch(torch_model(data.schema.n_features, config), session, owner=0)
        flat, at, shares = outcome.shares.local_share, 0, {}
        for name, parameter in model.named_parameters():
            count = math.prod(parameter.shape)
            shares[name] = flat[at : at + count].reshape(tuple(parameter.shape))
            at += count
        model.load_state_shares(shares)
        test_shared = session.share(test if rank == 0 else None, owner=0)
        predictions = model.predict(test_shared, to=0)
        if config.out:
            standardiser = None if config.dp_epsilon is not None else (
                session.public(torch.from_numpy(mean)), session.public(torch.from_numpy(inverse_std)))
            save_shares(Path(config.out), session, model, standardiser, data.schema, config)
        if rank == 0:
            scores = predictions.reshape(-1).numpy()
            result.update(test_rows=len(scores), auc=roc_auc(scores, data.test_labels),
                          accuracy=accuracy(scores, data.test_labels))
    elif rank == 0:
        result.update(test_rows=len(data.test_labels), auc=outcome.rounds[-1]["auc"],
                      accuracy=outcome.rounds[-1]["accuracy"])
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
    return mean, 1.0 / np.sqrt(np.maximum(mean_square - mean * mean, 0.0) + _VARIANCE_FLOOR)


# -- checkpoints --------------------------------------------------------------------------------------------
def _state_arrays(model: snn.Module, optimizer: SGD, mean: SharedTensor, inverse_std: SharedTensor
                  ) -> dict[str, torch.Tensor]:
    """This party's shares of everything training carries from one batch to the next."""
    arrays = {f"model/{name}": share for name, share in model.state_shares().items()}
    for name, parameter in model.named_parameters():
        buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
        if buffer is not None:
            arrays[f"momentum/{name}"] = buffer.local_share
    arrays["standardise/mean"] = mean.local_share
    arrays["standardise/inverse_std"] = inverse_std.local_share
    return arrays


def _checkpoint(session: Session, config: TrainConfig, step: int, model: snn.Module, optimizer: SGD,
                mean: SharedTensor, inverse_std: SharedTensor, losses: list[float]) -> None:
    """Write this party's checkpoint of ``step``, then (one round) learn that every party wrote its own,
    then commit.  A crash before the commit leaves the previous committed checkpoint in force."""
    party = session.party
    directory = config.checkpoints
    assert directory is not None
    arrays = {name: share.detach().cpu().numpy() for name, share in _state_arrays(model, optimizer, mean,
                                                                                    inverse_std).items()}
    meta = {"parties": session.world_size, "config": config.fingerprint(), "losses": losses,
            "counters": {"tag": party._tag, "dealer_requests": party.dealer_requests}}
    checkpoint.write(directory, step, session.rank, arrays, meta)
    tag = party.next_tag()
    written = torch.tensor([step], dtype=torch.int64)
    for peer in party.others:
        party.send(peer, tag, written)
    for peer in party.others:
        theirs = party.recv(peer, tag, "checkpoint written")
        if theirs.tolist() != [step]:
            raise checkpoint.CheckpointError(f"party {peer} wrote checkpoint {theirs.tolist()}, not {step}")
    party.rounds += 1
    checkpoint.commit(directory, step, session.rank)


def _resume(session: Session, config: TrainConfig, model: snn.Module, optimizer: SGD
            ) -> tuple[int, list[float], SharedTensor, SharedTensor]:
    """Agree with every party on the newest checkpoint all of them committed, load this party's part, and
    re-randomise every share (fresh pair and dealer keys: no mask or triple is used twice).
    Returns (batches done, losses so far, mean, inverse_std)."""
    party = session.party
    directory = Path(config.resume or "")
    if not directory.is_dir():
        raise checkpoint.CheckpointError(f"--resume {directory}: no such directory")
    mine = checkpoint.committed_steps(directory, session.rank)
    tag = party.next_tag()
    for peer in party.others:
        party.send(peer, tag, torch.tensor(mine or [-1], dtype=torch.int64))
    common = set(mine)
    for peer in party.others:
        common &= set(party.recv(peer, tag, "checkpoint steps").tolist())
    party.rounds += 1
    if not common:
        raise checkpoint.CheckpointError(
            f"--resume {directory}: no checkpoint that every party committed (party {session.rank} has "
            f"{mine or 'none'}); start again without --resume")
    step = max(common)
    arrays, meta = checkpoint.load(directory, step, session.rank)
    if meta.get("parties") != session.world_size or meta.get("config") != config.fingerprint():
        saved = meta.get("config", {})
        differing = sorted(k for k in set(saved) | set(config.fingerprint())
                           if saved.get(k) != config.fingerprint().get(k))
        raise checkpoint.CheckpointError(
            f"--resume {directory}: checkpoint {step} was made with other settings ({', '.join(differing) or 'parties'}); "
            "resume with the same options")
    fresh = {name: protocols.rerandomize(party, torch.from_numpy(arrays[name]).to(party.device))
             for name in sorted(arrays)}
    model.load_state_shares({name[len("model/"):]: share for name, share in fresh.items() if name.startswith("model/")})
    for name, parameter in model.named_parameters():
        if f"momentum/{name}" in fresh:
            optimizer.state.setdefault(parameter, {})["momentum_buffer"] = SharedTensor(session, fresh[f"momentum/{name}"])
    # Program tags continue past the checkpointed run's.  Dealer streams restart at 1 with the dealer (its
    # serve loop counts from 1): every key of this session is fresh, so no stream of the old keys, hence no
    # mask or triple, is ever drawn again.
    party._tag = max(party._tag, int(meta["counters"]["tag"]))
    mean = SharedTensor(session, fresh["standardise/mean"])
    inverse_std = SharedTensor(session, fresh["standardise/inverse_std"])
    return step, list(meta.get("losses", [])), mean, inverse_std


# -- model files --------------------------------------------------------------------------------------------
def _layout(model: snn.Module) -> list[dict[str, Any]]:
    layers = model.children() if isinstance(model, snn.Sequential) else (model,)
    described = []
    for layer in layers:
        if isinstance(layer, snn.Linear):
            out_features, in_features = layer.weight.shape
            described.append({"type": "Linear", "in": int(in_features), "out": int(out_features)})
        else:
            described.append({"type": type(layer).__name__})
    return described


def save_shares(directory: Path, session: Session, model: snn.Module,
                standardiser: tuple[SharedTensor, SharedTensor] | None, schema: Schema, config: TrainConfig) -> Path:
    """Write this party's shares of the model (and of the standardiser) to ``directory/party<rank>.npz``.

    Format: int64 arrays ``share/<parameter>`` (this party's additive shares mod 2^64), plus
    ``share/standardise.mean`` and ``share/standardise.inverse_std`` when the run standardised with joint
    statistics (``meta["standardise"]`` is "joint"; "public" when the declared scales alone were used, as under
    differential privacy), and a JSON string ``meta`` with the format version, party rank and count,
    fractional bits, the model layout and the public schema.  Written to a temporary file (mode 0600, in a
    folder made 0700), flushed and renamed, so a file is either whole or absent.  Never the plain weights.
    """
    arrays = {f"share/{name}": share.numpy() for name, share in model.state_shares().items()}
    if standardiser is not None:
        arrays["share/standardise.mean"] = standardiser[0].local_share.numpy()
        arrays["share/standardise.inverse_std"] = standardiser[1].local_share.numpy()
    meta = {"format": MODEL_FORMAT, "rank": session.rank, "parties": session.world_size,
            "frac_bits": session.encoding.frac_bits, "layout": _layout(model), "schema": schema.to_dict(),
            "standardise": "public" if standardiser is None else "joint", "config": asdict(config)}
    document = json.dumps(meta)
    return write_private(Path(directory) / f"party{session.rank}.npz",
                         lambda handle: np.savez(handle, meta=np.array(document), **arrays))


def combine_shares(paths: list[str | Path]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The model owner's step: add every party's shares mod 2^64 and decode.  Returns (meta, plain values)."""
    loaded = []
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                loaded.append((meta, {k[len("share/"):]: archive[k] for k in archive.files if k.startswith("share/")}))
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{path}: not a model share file ({error})") from None
    metas = [meta for meta, _ in loaded]
    parties = metas[0]["parties"]
    ranks = sorted(meta["rank"] for meta in metas)
    if ranks != list(range(parties)):
        raise DataError(f"need the share files of all {parties} parties exactly once; got ranks {ranks}")
    if any(meta["layout"] != metas[0]["layout"] or meta["frac_bits"] != metas[0]["frac_bits"] for meta in metas):
        raise DataError("the share files come from different models")
    names = loaded[0][1].keys()
    plain = {}
    for name in names:
        total = np.zeros_like(loaded[0][1][name])
        for _, shares in loaded:
            total = total + shares[name]  # int64 wraps modulo 2^64, as the ring does
        plain[name] = torch.from_numpy(total.astype(np.float64) / (1 << metas[0]["frac_bits"]))
    return metas[0], plain


# -- the plain reference ------------------------------------------------------------------------------------
def train_plain(config: TrainConfig, n_parties: int) -> dict[str, Any]:
    """The same job in plain torch: same split, standardisation, initial weights, batch order, loss and SGD."""
    schema, features, labels = load_all(config)
    split = split_rows(labels, n_parties, config.test_fraction, config.seed, by=split_column(config))
    train = np.concatenate(split.banks)
    n_numeric = len(schema.numeric)
    x_train, y_train = torch.from_numpy(features[train]), torch.from_numpy(labels[train])
    x_test = torch.from_numpy(features[split.test].copy())
    mean = x_train[:, :n_numeric].mean(0)
    inverse_std = 1.0 / torch.sqrt(x_train[:, :n_numeric].var(0, unbiased=False) + _VARIANCE_FLOOR)
    x_train = x_train.clone()
    x_train[:, :n_numeric] = (x_train[:, :n_numeric] - mean) * inverse_std
    x_test[:, :n_numeric] = (x_test[:, :n_numeric] - mean) * inverse_std
    model = torch_model(schema.n_features, config)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    for epoch in range(config.epochs):
        for rows in batch_order(len(train), epoch, config):
            index = torch.from_numpy(rows)
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy(model(x_train[index]).reshape(-1), y_train[index])
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = model(x_test).reshape(-1).numpy()
    return {"auc": roc_auc(scores, labels[split.test]), "accuracy": accuracy(scores, labels[split.test]),
            "train_rows": int(len(train)), "test_rows": int(len(split.test))}


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
