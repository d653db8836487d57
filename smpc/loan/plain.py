"""The plain reference: the same job in plain torch, what the secure model is compared with."""

from __future__ import annotations

import numpy as np
import torch

from smpc.loan.config import TrainConfig
from smpc.loan.data import batch_order, image_rows, load_all, split_column, split_rows, torch_model
from smpc.loan.metrics import accuracy, roc_auc
from smpc.loan.multiclass import check_job, class_metrics
from smpc.loan.results import PlainResult
from smpc.loan.secure import VARIANCE_FLOOR


def train_plain(config: TrainConfig, n_parties: int) -> PlainResult:
    """The same job in plain torch: same split, standardisation, initial weights, batch order, loss and SGD
    (binary cross-entropy of the positive label's probability, or cross-entropy of K logits)."""
    schema, features, labels = load_all(config)
    check_job(config, schema)
    split = split_rows(labels, n_parties, config.test_fraction, config.seed, by=split_column(config),
                       classes=max(schema.n_outputs, 2))
    train = np.concatenate(split.banks)
    n_numeric = len(schema.numeric)
    x_train, y_train = torch.from_numpy(features[train]), torch.from_numpy(labels[train])
    x_test = torch.from_numpy(features[split.test].copy())
    mean = x_train[:, :n_numeric].mean(0)
    inverse_std = 1.0 / torch.sqrt(x_train[:, :n_numeric].var(0, unbiased=False) + VARIANCE_FLOOR)
    x_train = x_train.clone()
    x_train[:, :n_numeric] = (x_train[:, :n_numeric] - mean) * inverse_std
    x_test[:, :n_numeric] = (x_test[:, :n_numeric] - mean) * inverse_std
    model = torch_model(schema.n_features, config, schema.n_outputs)
    if config.architecture == "cnn":
        x_train, x_test = image_rows(x_train, schema.n_features), image_rows(x_test, schema.n_features)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    for epoch in range(config.epochs):
        for rows in batch_order(len(train), epoch, config):
            index = torch.from_numpy(rows)
            optimizer.zero_grad()
            output = model(x_train[index])
            if schema.classes:
                loss = torch.nn.functional.cross_entropy(output, y_train[index].long())
            else:
                loss = torch.nn.functional.binary_cross_entropy(output.reshape(-1), y_train[index])
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        output = model(x_test)
    test_labels = labels[split.test]
    if schema.classes:
        auc, correct = class_metrics(torch.softmax(output, 1).numpy(), test_labels)
    else:
        scores = output.reshape(-1).numpy()
        auc, correct = roc_auc(scores, test_labels), accuracy(scores, test_labels)
    return PlainResult(auc=auc, accuracy=correct, train_rows=int(len(train)), test_rows=int(len(split.test)),
                       classes=len(schema.classes))
