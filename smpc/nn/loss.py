"""Losses on shares: ``MSELoss`` and ``BCELoss`` (with the logit shortcut after a final Sigmoid), and ``Loss``,
what a criterion returns."""

from __future__ import annotations

from typing import Any

import torch

from smpc.nn.module import ModelOutput
from smpc.tensor import SharedTensor, stack


class _Criterion:
    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def __call__(self, output: SharedTensor, target: Any) -> Loss:
        if not isinstance(output, SharedTensor):
            raise TypeError("the output must be a SharedTensor")
        shape = target.shape if isinstance(target, (SharedTensor, torch.Tensor)) else torch.as_tensor(target).shape
        if tuple(shape) != tuple(output.shape):
            raise ValueError(f"target shape {tuple(shape)} differs from output shape {tuple(output.shape)}")
        return Loss(self, output, target)

    def _count(self, output: SharedTensor) -> int:
        return output.numel() if self.reduction == "mean" else 1

    def _reduce(self, elementwise: SharedTensor) -> SharedTensor:
        return elementwise.mean() if self.reduction == "mean" else elementwise.sum()

    def _grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        raise NotImplementedError

    def _value(self, output: SharedTensor, target: Any) -> SharedTensor:
        raise NotImplementedError


class MSELoss(_Criterion):
    """mean((out - y)^2) (or the sum).  Gradient 2 (out - y) / N: 1 round (exact division)."""

    def _grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        return (output - target) * 2 / self._count(output)

    def _value(self, output: SharedTensor, target: Any) -> SharedTensor:
        difference = output - target
        return self._reduce(difference * difference)


class BCELoss(_Criterion):
    """Binary cross-entropy of probabilities p (a model ending in Sigmoid) and targets y in [0, 1].

    ``loss.backward()`` hands the final Sigmoid's input the gradient (p - y) / N (1 round), the closed form of
    d BCE(sigmoid(z), y) / dz: no log, no division.  The gradient with respect to p itself would need
    1 / (p (1 - p)), so a model that does not end in Sigmoid is refused.  ``loss.value()`` needs
    ``SharedTensor.log``; log arguments are clamped to at least 2^-frac_bits (torch clamps each log at -100).
    """

    def _grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        raise NotImplementedError(
            "the BCE gradient with respect to probabilities needs a division by p (1 - p); end the model in "
            "Sigmoid and call loss.backward(), which uses the logit gradient (p - y) / N"
        )

    def logit_grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        """(p - y) / N: the gradient with respect to the logit z where p = sigmoid(z).  1 round."""
        return (output - target) / self._count(output)

    def _value(self, output: SharedTensor, target: Any) -> SharedTensor:
        if not callable(getattr(SharedTensor, "log", None)):
            raise NotImplementedError("BCELoss.value needs SharedTensor.log, which this version does not have")
        floor = output.session.encoding.resolution
        both = stack([output, 1.0 - output]).clamp(min=floor).log()
        log_p, log_q = both[0], both[1]
        # -(y log p + (1 - y) log q) = -(log q + y (log p - log q)): one product.
        return -self._reduce(log_q + (log_p - log_q) * target)


class Loss:
    """What a criterion returns: its output and target, with ``backward()``, ``grad()`` and ``value()``.
    Nothing is computed until asked."""

    def __init__(self, criterion: _Criterion, output: SharedTensor, target: Any) -> None:
        self.criterion = criterion
        self.output = output
        self.target = target

    def grad(self) -> SharedTensor:
        """d loss / d output (for ``model.backward(grad)``).  MSE: 1 round.  BCE: NotImplementedError."""
        return self.criterion._grad(self.output, self.target)

    def backward(self) -> None:
        """Accumulate the gradients of the model that produced the output.  BCE after a final Sigmoid starts
        from the logit gradient (p - y) / N and skips the Sigmoid's backward."""
        if not isinstance(self.output, ModelOutput):
            raise TypeError("loss.backward() needs the output of a model call model(x); otherwise call "
                            "model.backward(loss.grad())")
        module = self.output.module
        if isinstance(self.criterion, BCELoss):
            if not module.ends_with_sigmoid:
                raise NotImplementedError("BCELoss.backward needs a model ending in Sigmoid (gradient (p - y) / N)")
            module._backward_output(self.output, self.criterion.logit_grad(self.output, self.target), True)
        else:
            module._backward_output(self.output, self.grad(), False)

    def value(self, to: int | None = None) -> float | None:
        """The loss, revealed to party ``to`` (None elsewhere) or to all.  Opens one number."""
        opened = self.criterion._value(self.output, self.target).reveal(to=to)
        return None if opened is None else float(opened)
