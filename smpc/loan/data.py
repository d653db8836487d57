"""What each party holds: its rows encoded with the public schema, the seeded split among banks and the test
set, the model owner's architecture and initial weights, and the public batch order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from smpc.loan.config import TrainConfig
from smpc.loan.joint_schema import agree_joint_schema
from smpc.loan.schema import (
    DataError,
    Schema,
    Table,
    check_label,
    column_kind,
    embedded_dataset,
    embedded_schema,
    label_classes,
    load_csv,
    load_table,
)
from smpc.session import Session
from smpc.tensor import SharedTensor


@dataclass(frozen=True)
class Split:
    """Row indices: the held-out test rows and each bank's training rows."""

    test: np.ndarray
    banks: tuple[np.ndarray, ...] = field(default_factory=tuple)


def split_rows(labels: np.ndarray, n_banks: int, test_fraction: float, seed: int,
               by: Sequence[str] | None = None, classes: int = 2) -> Split:
    """A stratified test hold-out (by label: 0.0 .. classes - 1), then the training rows dealt among the banks
    (horizontal split): at random, or with ``by`` (one value per row) sorted by that column and cut into
    contiguous blocks, so each bank gets a different range of it (a skewed split: numbers sort numerically,
    other values as text).

    The split is public and seeded (a numpy Generator: this shuffles public row indices, it makes no share).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test fraction must be between 0 and 1")
    generator = np.random.default_rng(seed)
    test, train = [], []
    for value in range(classes):
        rows = np.flatnonzero(labels == float(value))
        generator.shuffle(rows)
        cut = int(round(len(rows) * test_fraction))
        test.append(rows[:cut])
        train.append(rows[cut:])
    train_rows = np.concatenate(train)
    generator.shuffle(train_rows)
    if by is not None:
        if len(by) != len(labels):
            raise ValueError("the split column needs one value per row")
        train_rows = np.array(sorted(train_rows, key=lambda row: _sort_key(by[row])), dtype=train_rows.dtype)
    banks = tuple(np.sort(part) for part in np.array_split(train_rows, n_banks))
    if any(len(part) == 0 for part in banks):
        raise DataError(f"too few rows to give each of {n_banks} banks at least one")
    return Split(np.sort(np.concatenate(test)), banks)


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


@dataclass
class PartyData:
    schema: Schema
    features: np.ndarray  # this party's training rows, encoded
    labels: np.ndarray
    test_features: np.ndarray | None  # party 0 only
    test_labels: np.ndarray | None


def declared_schema(config: TrainConfig) -> Schema | None:
    """The declared public schema (a file; under differential privacy the embedded data's own), or None when
    the parties agree one from their rows.  With differential privacy it must be declared, since an agreed one
    is computed from the data."""
    if config.schema:
        return Schema.load(config.schema)
    if config.dp_epsilon is not None:
        if config.data is not None:
            raise DataError("differential privacy needs a declared public schema, not one inferred from the rows")
        return Schema.load(embedded_schema())
    return None


def encode_rows(config: TrainConfig, schema: Schema, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``table``'s rows (errors name its file and line).  Under differential privacy,
    values outside the declared schema are clipped to it instead of refused (an error would tell the other
    banks something about the rows)."""
    return schema.encode(table.rows, clip=config.dp_epsilon is not None, place=table.place)


def load_table_of(config: TrainConfig) -> Table:
    """The configured CSV file (the embedded data by default), cut to ``max_rows``."""
    return load_table(config.data or embedded_dataset()).head(config.max_rows)


def load_all(config: TrainConfig) -> tuple[Schema, np.ndarray, np.ndarray]:
    """The whole data set (the plain reference's view), with the declared schema or the one inferred from all
    rows (equal to the one the parties agree: ``joint_schema``)."""
    table = load_table_of(config)
    schema = declared_schema(config) or Schema.infer(table.header, table.rows, config.label, config.positive,
                                                     table.place)
    features, labels = encode_rows(config, schema, table)
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


def local_split(config: TrainConfig, table: Table, n_parties: int, declared: Schema | None) -> Split:
    """The seeded split of a local run's one file.  Every party of a local run reads the whole file, so the
    labels it stratifies by (and the file's column types, checked here so that a bad value is named by its
    line, not as a disagreement between parties) are no secret there."""
    label = declared.label if declared is not None else config.label
    check_label(label, table.header)
    if declared is None:
        for name in table.header:
            if name != label:
                column_kind(name, [row[name] for row in table.rows], table.place)
    positive, classes = (declared.positive, declared.classes) if declared is not None else label_classes(
        label, (row[label] for row in table.rows), config.positive)
    values = [row[label] for row in table.rows]
    if classes:
        unknown = [index for index, value in enumerate(values) if value not in classes]
        if unknown:
            raise DataError(f"{table.place(unknown[0])}: {label}={values[unknown[0]]!r} is not a class of the "
                            f"schema ({', '.join(classes[:10])})")
    labels = np.array([float(classes.index(value)) for value in values] if classes
                      else [1.0 if value == positive else 0.0 for value in values])
    return split_rows(labels, n_parties, config.test_fraction, config.seed, by=split_column(config),
                      classes=max(len(classes), 2))


def party_data(config: TrainConfig, session: Session) -> PartyData:
    """What this party holds.  Local runs deal the one file's rows out by the seeded split and each party
    keeps only its share (party 0 also the test rows); multi-host runs read this party's own file, party 0
    holding out its test rows.  Either way the schema is the declared one, or the one every party agrees
    from the rows it holds (``agree_joint_schema``)."""
    rank, declared = session.rank, declared_schema(config)
    if config.own_rows_only:
        table = load_table(config.data or embedded_dataset())
        schema = declared or agree_joint_schema(session, table, config.label, config.positive)
        features, labels = encode_rows(config, schema, table)
        if rank != 0:
            return PartyData(schema, features, labels, None, None)
        split = split_rows(labels, 1, config.test_fraction, config.seed, classes=max(schema.n_outputs, 2))
        train = split.banks[0]
        return PartyData(schema, features[train], labels[train], features[split.test], labels[split.test])
    table = load_table_of(config)
    split = local_split(config, table, session.world_size, declared)
    mine = table.take(split.banks[rank])
    test = table.take(split.test) if rank == 0 else None
    held = mine if test is None else table.take(np.concatenate([split.banks[rank], split.test]))
    schema = declared or agree_joint_schema(session, held, config.label, config.positive)
    features, labels = encode_rows(config, schema, mine)
    if test is None:
        return PartyData(schema, features, labels, None, None)
    return PartyData(schema, features, labels, *encode_rows(config, schema, test))


def torch_model(n_features: int, config: TrainConfig, n_outputs: int = 1) -> torch.nn.Module:
    """The model owner's architecture and seeded initial weights, the same for the plain reference.

    ``config.architecture``: "logreg" (Linear), "mlp" (Linear, Tanh, Linear) or "cnn" (Conv2d(1, 8, 3,
    padding 1), ReLU, MaxPool2d(2), Flatten, Linear; its input is ``image_rows``'s, one channel of side
    sqrt(n_features)).  With ``n_outputs`` 1 (a binary label) the model ends in Sigmoid, the positive label's
    probability; with K > 1 it ends in K logits (softmax regression or a softmax head, for cross-entropy).
    Weights and biases are uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default for Linear and Conv2d,
    drawn layer by layer from a generator of this call's own: torch's global generator is never touched
    (parties may be threads).
    """
    layers: list[torch.nn.Module]
    if config.architecture == "cnn":
        side = image_side(n_features)
        layers = [torch.nn.Conv2d(1, CNN_CHANNELS, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                  torch.nn.Flatten(), torch.nn.Linear(CNN_CHANNELS * (side // 2) ** 2, n_outputs)]
    elif config.architecture == "mlp":
        layers = [torch.nn.Linear(n_features, config.hidden_units), torch.nn.Tanh(),
                  torch.nn.Linear(config.hidden_units, n_outputs)]
    else:
        layers = [torch.nn.Linear(n_features, n_outputs)]
    model = torch.nn.Sequential(*layers, *([torch.nn.Sigmoid()] if n_outputs == 1 else []))
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                bound = 1.0 / math.sqrt(layer.weight[0].numel())
                for parameter in (layer.weight, layer.bias):
                    assert parameter is not None
                    parameter.copy_((torch.rand(parameter.shape, generator=generator) * 2.0 - 1.0) * bound)
    return model.double()


#: The CNN's convolution channels (as benchmarks.digits).
CNN_CHANNELS = 8


def image_side(n_features: int) -> int:
    """The side of the square one-channel images whose pixels are the ``n_features`` feature columns."""
    side = math.isqrt(n_features)
    if side * side != n_features or side < 2:
        raise DataError(f"--model cnn needs image rows: H*W numeric pixel columns, square, one channel (64 for "
                        f"8x8), not {n_features} features")
    return side


def check_image_schema(schema: Schema) -> None:
    """Refuse data the CNN cannot take: categorical columns, or a pixel count that is not a square."""
    if schema.categorical:
        raise DataError(f"--model cnn needs image rows: H*W numeric pixel columns, square, one channel; column "
                        f"{schema.categorical[0][0]!r} is categorical")
    image_side(schema.n_features)


Rows = TypeVar("Rows", torch.Tensor, SharedTensor)


def image_rows(features: Rows, n_features: int) -> Rows:
    """Rows (N x H*W) as the CNN's images (N x 1 x H x W)."""
    side = image_side(n_features)
    return features.reshape(-1, 1, side, side)


def batch_order(n_rows: int, epoch: int, config: TrainConfig) -> list[np.ndarray]:
    """Public, seeded mini-batch row indices of one epoch."""
    order = np.random.default_rng([config.seed, epoch]).permutation(n_rows)
    return [order[start : start + config.batch_size] for start in range(0, n_rows, config.batch_size)]
