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

import smpc.nn as snn
from smpc.dataset import DataError, Schema, accuracy, embedded_dataset, load_csv, roc_auc, split_rows
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

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.hidden < 0:
            raise ValueError("epochs, batch size and learning rate must be positive, hidden non-negative")


# -- data each party holds ----------------------------------------------------------------------------------
@dataclass
class PartyData:
    schema: Schema
    features: np.ndarray  # this party's training rows, encoded
    labels: np.ndarray
    test_features: np.ndarray | None  # party 0 only
    test_labels: np.ndarray | None


def load_schema(config: TrainConfig, header: list[str], rows: list[dict[str, str]]) -> Schema:
    if config.schema:
        return Schema.load(config.schema)
    return Schema.infer(header, rows, config.label, config.positive)


def load_all(config: TrainConfig) -> tuple[Schema, np.ndarray, np.ndarray]:
    """The whole data set (the local simulation's view, and the plain reference's)."""
    header, rows = load_csv(config.data or embedded_dataset())
    if config.max_rows:
        rows = rows[: config.max_rows]
    schema = load_schema(config, header, rows)
    features, labels = schema.encode(rows)
    return schema, features, labels


def party_data(config: TrainConfig, rank: int, n_parties: int) -> PartyData:
    """What party ``rank`` holds.  Local runs deal the one file's rows out by the seeded split and each party
    keeps only its share; multi-host runs read this party's own file, party 0 holding out its test rows."""
    if config.own_rows_only:
        header, rows = load_csv(config.data or embedded_dataset())
        schema = load_schema(config, header, rows)
        features, labels = schema.encode(rows)
        if rank != 0:
            return PartyData(schema, features, labels, None, None)
        split = split_rows(labels, 1, config.test_fraction, config.seed)
        train = split.banks[0]
        return PartyData(schema, features[train], labels[train], features[split.test], labels[split.test])
    schema, features, labels = load_all(config)
    split = split_rows(labels, n_parties, config.test_fraction, config.seed)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("w", encoding="utf-8")

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
        n_numeric = len(data.schema.numeric)
        features = torch.cat([session.share(data.features if rank == b else None, owner=b) for b in range(n)])
        labels = torch.cat([session.share(data.labels if rank == b else None, owner=b) for b in range(n)])
        mean, inverse_std = _standardiser(session, features, n_numeric)
        features = _standardise(features, mean, inverse_std)
        model = snn.from_torch(torch_model(data.schema.n_features, config), session,
                               owner=None if config.joint_init else 0,
                               seed=(config.seed * 1000 + rank) if config.joint_init else None)
        optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                        weight_decay=config.weight_decay)
        criterion = snn.BCELoss()
        n_rows = features.shape[0]
        total_batches = config.epochs * math.ceil(n_rows / config.batch_size)
        done, losses = 0, []
        for epoch in range(config.epochs):
            for rows in batch_order(n_rows, epoch, config):
                index = torch.from_numpy(rows)
                loss = criterion(model(features[index]), labels[index].reshape(-1, 1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                value = loss.value(to=0) if config.show_loss else None
                if value is not None:
                    losses.append(value)
                if progress is not None and rank == 0 and (done % 10 == 0 or done == total_batches):
                    elapsed = time.monotonic() - start
                    left = elapsed / done * (total_batches - done)
                    shown = f"loss {value:.4f}" if value is not None else "loss hidden (--show-loss)"
                    progress(f"epoch {epoch + 1}/{config.epochs}  batch {done}/{total_batches}  {shown}  "
                             f"{elapsed:.0f} s elapsed, about {left:.0f} s left")
                    if value is not None and (not math.isfinite(value) or value > 50):
                        progress("warning: the loss is diverging; lower --lr")
        test_features = session.share(data.test_features if rank == 0 else None, owner=0)
        predictions = model.predict(_standardise(test_features, mean, inverse_std), to=0)
        revealed = model.reveal(to=config.reveal_to) if config.reveal_to is not None else None
        if config.out:
            save_shares(Path(config.out), session, model, mean, inverse_std, data.schema, config)
        result: dict[str, Any] = {"rank": rank, "stats": session.stats.as_dict(),
                                  "train_rows": int(n_rows), "seconds": time.monotonic() - start, "losses": losses}
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


def save_shares(directory: Path, session: Session, model: snn.Module, mean: SharedTensor, inverse_std: SharedTensor,
                schema: Schema, config: TrainConfig) -> Path:
    """Write this party's shares of the model (and of the standardiser) to ``directory/party<rank>.npz``.

    Format: int64 arrays ``share/<parameter>`` (this party's additive shares mod 2^64), plus
    ``share/standardise.mean`` and ``share/standardise.inverse_std``, and a JSON string ``meta`` with the
    format version, party rank and count, fractional bits, the model layout and the public schema.  Written to
    a temporary file, flushed and renamed, so a file is either whole or absent.  Never the plain weights.
    """
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"share/{name}": share.numpy() for name, share in model.state_shares().items()}
    arrays["share/standardise.mean"] = mean.local_share.numpy()
    arrays["share/standardise.inverse_std"] = inverse_std.local_share.numpy()
    meta = {"format": MODEL_FORMAT, "rank": session.rank, "parties": session.world_size,
            "frac_bits": session.encoding.frac_bits, "layout": _layout(model), "schema": schema.to_dict(),
            "config": asdict(config)}
    target = directory / f"party{session.rank}.npz"
    temporary = directory / f".party{session.rank}.npz.tmp"
    with temporary.open("wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        handle.flush()
    temporary.replace(target)
    return target


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
    split = split_rows(labels, n_parties, config.test_fraction, config.seed)
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
