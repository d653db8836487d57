"""Multi-class jobs: a label with more than two values and no ``--positive`` (the schema's ``classes``).

Each owner shares its labels as one-hot rows (N x K, in the schema's class order), so no label is ever used as
an index; the model ends in K logits; the loss is ``smpc.nn.CrossEntropyLoss`` with the shared one-hot targets,
whose backward seeds the logits with the closed form (softmax(z) - onehot) / N.  Party 0 receives its test
rows' logits centred on their row mean (z - mean(z): the same information as the softmax probabilities, one
degree of freedom less than the logits) and computes the probabilities, accuracy and macro one-vs-rest AUC in
the clear.  Also what multi-class jobs refuse (fedavg, differential privacy) and the CNN's checks.
"""

from __future__ import annotations

import numpy as np

import smpc.nn as snn
from smpc.autograd import no_grad
from smpc.loan.config import TrainConfig
from smpc.loan.data import check_image_schema, image_rows
from smpc.loan.metrics import class_accuracy, macro_auc, softmax
from smpc.loan.schema import DataError, Schema
from smpc.tensor import SharedTensor


def check_job(config: TrainConfig, schema: Schema) -> None:
    """Refuse, with one line, what this job cannot do with this schema: the CNN on data that is not square
    one-channel images or with ``--out``, and a multi-class label with fedavg or differential privacy."""
    if config.architecture == "cnn":
        check_image_schema(schema)
        if config.out:
            raise DataError("--out writes share files of logreg and mlp models only (smpc reveal-model and predict "
                            "take Linear, Tanh, ReLU and Sigmoid layers); use --reveal-to to open the CNN's weights")
    if not schema.classes:
        return
    shown = f"label {schema.label!r} has {len(schema.classes)} classes"
    if config.mode != "secure":
        raise DataError(f"{shown}: multi-class jobs train in secure mode only (fedavg trains a binary label; "
                        "pass --positive VALUE for one)")
    if config.dp_epsilon is not None:
        raise DataError(f"{shown}: differential privacy trains a binary label only (pass --positive VALUE)")


def onehot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices (N, float) as one-hot rows (N x K float64)."""
    return np.eye(n_classes, dtype=np.float64)[labels.astype(np.int64)]


def training_targets(labels: np.ndarray, schema: Schema) -> np.ndarray:
    """What an owner shares as its rows' targets: the 0/1 labels (binary) or their one-hot rows (K classes)."""
    return onehot(labels, len(schema.classes)) if schema.classes else labels


def model_input(features: SharedTensor, config: TrainConfig) -> SharedTensor:
    """The model's input: the rows, or for the CNN the rows as one-channel square images."""
    return image_rows(features, features.shape[1]) if config.architecture == "cnn" else features


def class_probabilities(model: snn.Module, features: SharedTensor, config: TrainConfig, to: int = 0
                        ) -> np.ndarray | None:
    """Class probabilities (N x K) of shared rows on party ``to`` (None elsewhere): the model's logits (eval
    mode, nothing recorded) centred on their row mean (one truncation) are opened there, and the softmax is
    taken in the clear.  Rounds: the forward's, 1 (the mean's truncation, replicated: 2) and 1 (the reveal)."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = model(model_input(features, config))
            centred = logits - logits.mean(1, keepdim=True)
    finally:
        model.train(was_training)
    opened = centred.reveal(to=to)
    return None if opened is None else softmax(opened.cpu().numpy())


def class_metrics(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(macro one-vs-rest ROC AUC, accuracy) of class probabilities against class indices."""
    return macro_auc(probabilities, labels), class_accuracy(probabilities, labels)
