"""The digits CNN trained on shares (issue 16): the loop of ``benchmarks.digits``'s "MPC training on shares" row.

Who holds what: every data owner (party o of three) secret-shares its own training images and a one-hot matrix
of its labels (labels stay private: the loss is -(onehot * log_softmax(logits)).sum(1).mean(), no label is
used as an index); party 0, the model owner, shares the initial weights.  The training set on shares is the
owners' rows one after the other (owner 0's, then 1's, then 2's: only the row counts are public), and each epoch
visits it in a public seeded order, batch by batch, as ``benchmarks.digits.train_epochs`` does in plain torch on
the same rows in the same order.  Per batch: conv2d -> relu -> max_pool2d -> flatten -> linear -> log_softmax
forward, ``backward`` (smpc.autograd), then SGD with momentum 0.9 (torch's rule: b = 0.9 b + g, p = p - lr b;
b = g on the first step) under ``no_grad``; parameters are re-wrapped with ``requires_grad_()`` each step.
Nothing is opened during training; at the end the trained weights are revealed to the model owner only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

import smpc
from smpc.nn import functional as SF

#: The CNN's parameters in ``benchmarks.digits.make_model`` order: conv weight, conv bias, linear weight, bias.
Params = list[smpc.SharedTensor]


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


def share_model(session: smpc.Session, model: torch.nn.Module, owner: int = 0) -> Params:
    """The model owner's parameters as shares (others pass any model of the same shapes: only shapes travel)."""
    return [session.share(p.detach().double() if session.rank == owner else None, owner=owner)
            for p in model.parameters()]


def forward(params: Params, x: smpc.SharedTensor) -> smpc.SharedTensor:
    """log-probabilities (B, 10) of the digits CNN on a shared batch (B, 1, 8, 8)."""
    conv_w, conv_b, lin_w, lin_b = params
    hidden = SF.max_pool2d(SF.conv2d(x, conv_w, conv_b, padding=1).relu(), 2)
    return (SF.flatten(hidden) @ lin_w.t() + lin_b).log_softmax(1)


def nll(logp: smpc.SharedTensor, onehot: smpc.SharedTensor) -> smpc.SharedTensor:
    """NLL with private labels: -(onehot * logp).sum(1).mean() (one shared product)."""
    return -(onehot * logp).sum(1).mean()


def batches(count: int, batch_size: int, seed: list[int]) -> Iterator[torch.Tensor]:
    """The public seeded batch order of one epoch (``benchmarks.digits.train_epochs``'s)."""
    order = torch.from_numpy(np.random.default_rng(seed).permutation(count))
    for start in range(0, count, batch_size):
        yield order[start : start + batch_size]


class MomentumSGD:
    """torch.optim.SGD(momentum=0.9) on shared parameters: b = 0.9 b + g (b = g first), p = p - lr b.
    Per step, per parameter tensor one after another: 0.9 b (one truncation; skipped on the first step) and
    lr b (one truncation); a truncation is 2 rounds in the replicated family, 1 in the dealer one.  Error per
    step: at most 2 u on each parameter (u = 2^-16, plus the encoded 0.9 and lr's e |b|) beyond the
    gradients' own."""

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        self.lr, self.momentum = lr, momentum
        self.buffers: list[smpc.SharedTensor] | None = None

    def step(self, params: Params) -> Params:
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            raise RuntimeError("a parameter has no gradient: call backward first")
        with smpc.no_grad():
            if self.buffers is None:
                self.buffers = [g for g in grads if g is not None]
            else:
                self.buffers = [b * self.momentum + g for b, g in zip(self.buffers, grads) if g is not None]
            return [(p - b * self.lr).detach().requires_grad_() for p, b in zip(params, self.buffers)]


def train(session: smpc.Session, params: Params, images: smpc.SharedTensor, onehot: smpc.SharedTensor, *,
          epochs: int, lr: float, batch_size: int, order_seed: list[int], max_batches: int | None = None
          ) -> Params:
    """``epochs`` passes of momentum SGD over the shared rows (at most ``max_batches`` batches in all: the
    quick test); returns the trained shared parameters."""
    params = [p.detach().requires_grad_() for p in params]
    optimizer, done = MomentumSGD(lr), 0
    for epoch in range(epochs):
        for rows in batches(images.shape[0], batch_size, [*order_seed, epoch]):
            if max_batches is not None and done >= max_batches:
                return params
            nll(forward(params, images[rows]), onehot[rows]).backward()
            params, done = optimizer.step(params), done + 1
    return params


def reveal_model(params: Params, model: torch.nn.Module, to: int = 0) -> torch.nn.Module | None:
    """The trained weights opened to party ``to`` only, loaded into ``model`` there (None elsewhere)."""
    opened = [p.reveal(to=to) for p in params]
    if opened[0] is None:
        return None
    with torch.no_grad():
        for target, value in zip(model.parameters(), opened):
            assert value is not None
            target.copy_(value.to(target.dtype))
    return model
