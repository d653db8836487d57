"""The digits CNN trained on shares (issue 16): the loop of ``benchmarks.digits``'s "MPC training on shares" row.

Who holds what: every data owner (party o of three) secret-shares its own training images and a one-hot matrix
of its labels (labels stay private: the loss is -(onehot * log_softmax(logits)).sum(1).mean(), no label is
used as an index: ``smpc.nn.NLLLoss`` takes the shared one-hot rows); party 0, the model owner, shares the
initial weights (``smpc.nn.from_torch(model, session, owner=0)``).  The training set on shares is the
owners' rows one after the other (owner 0's, then 1's, then 2's: only the row counts are public), and each epoch
visits it in a public seeded order, batch by batch, as ``benchmarks.digits.train_epochs`` does in plain torch on
the same rows in the same order.  Per batch: the converted CNN's forward (Conv2d -> ReLU -> MaxPool2d ->
Flatten -> Linear -> LogSoftmax), ``loss.backward()`` (smpc.autograd), then ``smpc.optim.SGD`` with momentum
0.9 (torch's rule: b = 0.9 b + g, p = p - lr b; b = g on the first step).  Nothing is opened during training;
at the end the trained weights are revealed to the model owner only (``model.reveal(to=0)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

import smpc
from smpc import nn as snn


def share_rows(session: smpc.Session, owned: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[smpc.SharedTensor,
                                                                                            smpc.SharedTensor]:
    """Every owner shares its (images (n, 1, 8, 8), labels (n,)) -- ``owned[rank]`` is meaningful on its own
    party only -- as images and one-hot labels; the owners' rows concatenated in owner order.  1 sharing
    round per owner and tensor."""
    images, onehots = [], []
    for owner, (owner_images, owner_labels) in enumerate(owned):
        mine = session.rank == owner
        onehot = torch.nn.functional.one_hot(torch.from_numpy(owner_labels), 10).double() if mine else None
        images.append(session.share(torch.from_numpy(owner_images).double() if mine else None, owner=owner))
        onehots.append(session.share(onehot, owner=owner))
    return smpc.cat(images), smpc.cat(onehots)


def batches(count: int, batch_size: int, seed: list[int]) -> Iterator[torch.Tensor]:
    """The public seeded batch order of one epoch (``benchmarks.digits.train_epochs``'s)."""
    order = torch.from_numpy(np.random.default_rng(seed).permutation(count))
    for start in range(0, count, batch_size):
        yield order[start : start + batch_size]


def train(session: smpc.Session, model: torch.nn.Module, images: smpc.SharedTensor, onehot: smpc.SharedTensor, *,
          epochs: int, lr: float, batch_size: int, order_seed: list[int], max_batches: int | None = None,
          owner: int = 0) -> snn.Module:
    """``model`` (the owner's weights; the others pass the same architecture) converted with
    ``smpc.nn.from_torch`` and trained with ``smpc.nn.NLLLoss`` on the shared one-hot labels and
    ``smpc.optim.SGD(momentum=0.9)``: ``epochs`` passes over the shared rows (at most ``max_batches`` batches in
    all: the quick test).  Returns the shared model."""
    shared = snn.from_torch(model, session, owner=owner)
    criterion = snn.NLLLoss()
    optimizer = smpc.optim.SGD(shared.parameters(), lr=lr, momentum=0.9)
    done = 0
    for epoch in range(epochs):
        for rows in batches(images.shape[0], batch_size, [*order_seed, epoch]):
            if max_batches is not None and done >= max_batches:
                return shared
            optimizer.zero_grad()
            criterion(shared(images[rows]), onehot[rows]).backward()
            optimizer.step()
            done += 1
    return shared
