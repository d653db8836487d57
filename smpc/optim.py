"""Optimizers over shared parameters: ``SGD`` with torch.optim.SGD's semantics.

The learning rate, momentum and weight decay are public; parameters, gradients and momentum buffers stay
shared.  Every product of a step is a shared value times a public float, so a whole step over all parameters
is one batched product with public coefficients: one truncation, one round.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from smpc.nn import Parameter
from smpc.tensor import SharedTensor, cat

__all__ = ["SGD"]


class SGD:
    """Stochastic gradient descent, as torch.optim.SGD (dampening 0, no Nesterov):

        g = grad + weight_decay * param
        buf = g on the first step, else momentum * buf + g        (only if momentum != 0)
        param = param - lr * (buf if momentum != 0 else g)

    Parameters whose ``grad`` is None are skipped.  ``step`` evaluates this as
        buf' = momentum * buf + weight_decay * param + grad
        param' = param - (lr weight_decay) * param - (lr momentum) * buf - lr * grad
    with every public-coefficient product of every parameter batched into one truncation.
    Rounds per step: 1.  Error: below one unit in the last place per product, plus the encoding of each
    coefficient (2^-(frac_bits+1)) times the value it multiplies.
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for name, value in (("learning rate", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not float(value) >= 0.0:
                raise ValueError(f"invalid {name}: {value}")
        for parameter in self.params:
            if not isinstance(parameter, Parameter):
                raise TypeError(f"SGD takes smpc.nn Parameters (model.parameters()), got {type(parameter).__name__}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        #: Per parameter, its shared ``momentum_buffer`` (as torch's optimizer.state).
        self.state: dict[Parameter, dict[str, SharedTensor]] = {}

    def zero_grad(self) -> None:
        """Drop every gradient (torch's default set_to_none=True)."""
        for parameter in self.params:
            parameter.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient (1 round)."""
        lr, momentum, decay = self.lr, self.momentum, self.weight_decay
        products = _PublicProducts()
        plans = []
        for parameter in self.params:
            grad = parameter.grad
            if grad is None:
                continue
            value = parameter.data
            buffer = self.state.get(parameter, {}).get("momentum_buffer")
            # Indices of the products each new value is made of.
            param_terms = [products.add(value, lr * decay), products.add(grad, lr)]
            buffer_terms = []
            if momentum != 0.0:
                buffer_terms.append(products.add(value, decay))
                if buffer is not None:
                    param_terms.append(products.add(buffer, lr * momentum))
                    buffer_terms.append(products.add(buffer, momentum))
            plans.append((parameter, value, grad, param_terms, buffer_terms))
        results = products.compute()
        for parameter, value, grad, param_terms, buffer_terms in plans:
            parameter.data = _minus_all(value, [results[i] for i in param_terms])
            if momentum != 0.0:
                self.state.setdefault(parameter, {})["momentum_buffer"] = _plus_all(
                    grad, [results[i] for i in buffer_terms]
                )


class _PublicProducts:
    """Products of SharedTensors with public floats, all opened in one batched truncation."""

    def __init__(self) -> None:
        self._terms: list[tuple[SharedTensor, float]] = []

    def add(self, tensor: SharedTensor, coefficient: float) -> int:
        self._terms.append((tensor, coefficient))
        return len(self._terms) - 1

    def compute(self) -> list[SharedTensor | None]:
        """The products in order (None for a zero coefficient: no term)."""
        live = [(index, tensor, c) for index, (tensor, c) in enumerate(self._terms) if c != 0.0]
        results: list[SharedTensor | None] = [None] * len(self._terms)
        if not live:
            return results
        flat = cat([tensor.reshape(-1) for _, tensor, _ in live])
        coefficients = torch.cat(
            [torch.full((tensor.numel(),), c, dtype=torch.float64) for _, tensor, c in live]
        )
        product = flat * coefficients
        offset = 0
        for index, tensor, _ in live:
            results[index] = product[offset : offset + tensor.numel()].reshape(tensor.shape)
            offset += tensor.numel()
        return results


def _minus_all(start: SharedTensor, terms: list[SharedTensor | None]) -> SharedTensor:
    for term in terms:
        if term is not None:
            start = start - term
    return start


def _plus_all(start: SharedTensor, terms: list[SharedTensor | None]) -> SharedTensor:
    for term in terms:
        if term is not None:
            start = start + term
    return start
