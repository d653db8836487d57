"""Losses on shares, as torch.nn's: ``MSELoss``, ``BCELoss``, ``BCEWithLogitsLoss``, ``CrossEntropyLoss``,
``NLLLoss``; and ``Loss``, what a criterion returns.

A criterion returns a lazy ``Loss``: ``loss.backward()`` seeds autograd with the loss's gradient in closed form
where that is cheaper than differentiating the loss's value (the value needs logs; the gradient does not), and
``loss.value(to=...)`` computes and opens the value only when asked.  ``loss.tensor()`` is the shared value with
its graph, for composing losses (``(loss.tensor() + penalty).backward()`` takes the generic path).

==========================  ==================================  =========================================
loss                        backward seeds (closed form)        rounds of the seed
==========================  ==================================  =========================================
MSELoss                     output: 2 (out - y) / N             1 (one exact division)
BCELoss after a Sigmoid     the Sigmoid's input: (p - y) / N    1; the Sigmoid's own backward is skipped
BCELoss otherwise           generic autograd of the value       R_log + 2 R_reciprocal-ish (avoid it)
BCEWithLogitsLoss           logits: (sigmoid(z) - y) / N        R_sigmoid + 1
CrossEntropyLoss            logits: (softmax(z) - t) / N        R_softmax + 1
NLLLoss                     generic: the value's graph            2 (its division and product)
==========================  ==================================  =========================================

N is the number of elements averaged over (rows for CrossEntropy/NLL); with ``reduction="sum"``, N = 1.
Class targets ``t`` are either public class indices (a LongTensor of shape (N,), torch's form) or class
probabilities of shape (N, C) -- a SharedTensor when the labels are private (a one-hot matrix each data owner
shares), or a public tensor.  Errors: the seeds' errors are those of sigmoid/softmax (smpc.protocols.approx) plus
one truncation (2^-16); values clamp log arguments to at least 2^-frac_bits (torch clamps each log at -100).
"""

from __future__ import annotations

from typing import Any

import torch

from smpc import autograd, gradients
from smpc.tensor import SharedTensor, stack

Target = SharedTensor | torch.Tensor


class _Criterion:
    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def __call__(self, output: SharedTensor, target: Any) -> Loss:
        if not isinstance(output, SharedTensor):
            raise TypeError("the output must be a SharedTensor")
        return Loss(self, output, self._target(output, target))

    def _target(self, output: SharedTensor, target: Any) -> Target:
        """The target, checked against the output's shape (elementwise losses: the same shape)."""
        if not isinstance(target, SharedTensor):
            target = torch.as_tensor(target, dtype=torch.float64)
        if tuple(target.shape) != tuple(output.shape):
            raise ValueError(f"target shape {tuple(target.shape)} differs from output shape {tuple(output.shape)}")
        return target

    def _count(self, output: SharedTensor) -> int:
        return output.numel() if self.reduction == "mean" else 1

    def _reduce(self, elementwise: SharedTensor) -> SharedTensor:
        return elementwise.mean() if self.reduction == "mean" else elementwise.sum()

    def _backward(self, output: SharedTensor, target: Target) -> None:
        """Accumulate the gradients of whatever made ``output`` (default: the value's generic graph)."""
        self._value(output, target).backward()

    def _value(self, output: SharedTensor, target: Target) -> SharedTensor:
        raise NotImplementedError


class MSELoss(_Criterion):
    """mean((out - y)^2) (or the sum).  Backward seeds the output with 2 (out - y) / N: 1 round."""

    def _backward(self, output: SharedTensor, target: Target) -> None:
        with autograd.no_grad():
            grad = (output - target) * 2 / self._count(output)
        autograd.backward(output, grad)

    def _value(self, output: SharedTensor, target: Target) -> SharedTensor:
        difference = output - target
        return self._reduce(difference * difference)


def _binary_value(criterion: _Criterion, probability: SharedTensor, target: Target) -> SharedTensor:
    """-(y log p + (1 - y) log(1 - p)), reduced; logs of arguments clamped to at least the resolution."""
    floor = probability.session.encoding.resolution
    both = stack([probability, 1.0 - probability]).clamp(min=floor).log()
    log_p, log_q = both[0], both[1]
    # -(y log p + (1 - y) log q) = -(log q + y (log p - log q)): one product.
    return -criterion._reduce(log_q + (log_p - log_q) * target)


class BCELoss(_Criterion):
    """Binary cross-entropy of probabilities p and targets y in [0, 1].

    When p is the output of a Sigmoid (``smpc.nn.Sigmoid`` or ``SharedTensor.sigmoid``), ``backward`` seeds the
    Sigmoid's input with (p - y) / N (1 round), the closed form of d BCE(sigmoid(z), y) / dz: no log, no
    division, and the Sigmoid's backward is skipped.  Otherwise it differentiates the value generically, which
    needs a reciprocal of p and of 1 - p (tests/smpc/test_autograd.py checks both ways agree).
    """

    def _backward(self, output: SharedTensor, target: Target) -> None:
        node = output.grad_fn
        if node is None or node.backward_fn is not gradients.sigmoid:
            super()._backward(output, target)
            return
        logit = node.inputs[0]
        with autograd.no_grad():
            grad = (output - target) / self._count(output)
        node.release()
        autograd.backward(logit, grad)

    def _value(self, output: SharedTensor, target: Target) -> SharedTensor:
        return _binary_value(self, output, target)


class BCEWithLogitsLoss(_Criterion):
    """BCE of sigmoid(z) for logits z.  Backward seeds z with (sigmoid(z) - y) / N: R_sigmoid + 1 rounds (the
    sigmoid's error, 3.2e-4, bounds the seed's error per element before the division)."""

    def _backward(self, output: SharedTensor, target: Target) -> None:
        with autograd.no_grad():
            grad = (output.sigmoid() - target) / self._count(output)
        autograd.backward(output, grad)

    def _value(self, output: SharedTensor, target: Target) -> SharedTensor:
        return _binary_value(self, output.sigmoid(), target)


class _ClassCriterion(_Criterion):
    """Targets as public class indices (N,) or class probabilities (N, C), for (N, C) inputs."""

    def _target(self, output: SharedTensor, target: Any) -> Target:
        if output.dim() != 2:
            raise ValueError(f"{type(self).__name__} takes inputs of shape (N, C), got {tuple(output.shape)}")
        rows, classes = output.shape
        if isinstance(target, SharedTensor):
            if tuple(target.shape) != (rows, classes):
                raise ValueError(f"shared class probabilities must have shape {(rows, classes)}, got "
                                 f"{tuple(target.shape)}")
            return target
        target = torch.as_tensor(target)
        if target.dtype.is_floating_point:
            if tuple(target.shape) != (rows, classes):
                raise ValueError(f"class probabilities must have shape {(rows, classes)}, got {tuple(target.shape)}")
            return target.to(torch.float64)
        if tuple(target.shape) != (rows,):
            raise ValueError(f"class indices must have shape ({rows},), got {tuple(target.shape)}")
        if rows and (int(target.min()) < 0 or int(target.max()) >= classes):
            raise ValueError(f"class indices must lie in [0, {classes}), got {int(target.min())}..{int(target.max())}")
        return torch.nn.functional.one_hot(target.long(), classes).to(torch.float64)

    def _count(self, output: SharedTensor) -> int:
        return output.shape[0] if self.reduction == "mean" else 1

    def _reduce_rows(self, picked: SharedTensor) -> SharedTensor:
        """-(sum over classes and rows) / N."""
        total = picked.sum()
        return -(total / self._count(output=picked)) if self.reduction == "mean" else -total


class CrossEntropyLoss(_ClassCriterion):
    """-mean over rows of sum_c t_c log_softmax(z)_c (torch.nn.CrossEntropyLoss without weights or label
    smoothing).  Backward seeds the logits with (softmax(z) - t) / N: R_softmax + 1 rounds, no log."""

    def _backward(self, output: SharedTensor, target: Target) -> None:
        with autograd.no_grad():
            grad = (output.softmax(1) - target) / self._count(output)
        autograd.backward(output, grad)

    def _value(self, output: SharedTensor, target: Target) -> SharedTensor:
        return self._reduce_rows(output.log_softmax(1) * target)


class NLLLoss(_ClassCriterion):
    """-mean over rows of sum_c t_c x_c for log-probabilities x (after LogSoftmax), as torch.nn.NLLLoss; shared
    one-hot targets keep the labels private.  Backward is generic autograd of the value: -t / N reaches x
    (2 rounds: the division and the product with t)."""

    def _value(self, output: SharedTensor, target: Target) -> SharedTensor:
        return self._reduce_rows(output * target)


class Loss:
    """What a criterion returns: its output and target, with ``backward()``, ``value()`` and ``tensor()``.
    Nothing is computed until asked."""

    def __init__(self, criterion: _Criterion, output: SharedTensor, target: Target) -> None:
        self.criterion = criterion
        self.output = output
        self.target = target

    def backward(self) -> None:
        """Accumulate the gradients of every parameter that made the output (closed forms in the table)."""
        if not self.output.requires_grad:
            raise RuntimeError("loss.backward(): the output does not require grad (nothing to differentiate: "
                               "was it computed under smpc.no_grad(), or from data alone?)")
        self.criterion._backward(self.output, self.target)

    def tensor(self) -> SharedTensor:
        """The loss as a shared scalar with its autograd graph (for composing losses)."""
        return self.criterion._value(self.output, self.target)

    def value(self, to: int | None = None) -> float | None:
        """The loss, revealed to party ``to`` (None elsewhere) or to all.  Opens one number."""
        with autograd.no_grad():
            opened = self.criterion._value(self.output, self.target).reveal(to=to)
        return None if opened is None else float(opened)
