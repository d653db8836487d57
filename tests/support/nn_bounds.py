"""Bounds for smpc.nn against torch: ``Approx`` carries a float64 value with a bound on |shared - value| through
the same operations the shared model performs, with e = 2^-17 (encoding) and u = 2^-16 (one truncation):
  * encoded input: e;  a + b: da + db;  x * c (public float): |c| dx + e |x| + e dx + u;
  * a * b, a @ b: da |b| + |a| db + da db (summed over the inner dimension) + u;  a / n (exact division): da/n + u;
  * ReLU: dx where |x| > dx (the comparison is exact, so the mask is right), else |x| + dx; its backward:
    dg where |x| > dx, else |g| + dg;
  * sigmoid, tanh: 1e-3 (their stated maximum error) + L dx with Lipschitz constants L = 1/4 and 1.
Also the torch models and data the nn tests share, and their reference gradients by autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import smpc
from smpc import nn as snn

E = math.ldexp(1.0, -17)
U = math.ldexp(1.0, -16)
#: Maximum absolute error of SharedTensor.sigmoid and .tanh over the whole range (their documented bound).
ACTIVATION_ERROR = 1e-3


def assert_rounds(count: int, expected: int) -> None:
    """``count`` rounds where ``expected`` are planned (every protocol's round count is data-independent)."""
    assert count == expected, f"{count} rounds, expected {expected}"


def truncation_rounds(session: smpc.Session) -> int:
    """Rounds of one truncation in the session's family: 1 in the dealer family, 2 in the replicated one (the
    two-party truncation in the helper sub-session, then back to replicated shares)."""
    return 2 if session.protocol == "replicated" else 1


needs_sigmoid = pytest.mark.skipif(not hasattr(smpc.SharedTensor, "sigmoid"), reason="SharedTensor.sigmoid missing")
needs_tanh = pytest.mark.skipif(not hasattr(smpc.SharedTensor, "tanh"), reason="SharedTensor.tanh missing")


# -- error propagation -----------------------------------------------------------------------------------
class Approx:
    """A float64 value and a bound on how far the shared computation of it may be."""

    def __init__(self, value: torch.Tensor, bound: Any) -> None:
        self.value = value.detach().to(torch.float64).clone()
        self.bound = torch.as_tensor(bound, dtype=torch.float64).expand_as(self.value).clone()

    @classmethod
    def encoded(cls, value: torch.Tensor) -> Approx:
        return cls(value, E)

    def __add__(self, other: Approx) -> Approx:
        return Approx(self.value + other.value, self.bound + other.bound)

    def __sub__(self, other: Approx) -> Approx:
        return Approx(self.value - other.value, self.bound + other.bound)

    def __mul__(self, other: Approx) -> Approx:
        a, b = self, other
        return Approx(a.value * b.value, a.bound * b.value.abs() + a.value.abs() * b.bound + a.bound * b.bound + U)

    def __matmul__(self, other: Approx) -> Approx:
        a, b = self, other
        bound = a.bound @ b.value.abs() + a.value.abs() @ b.bound + a.bound @ b.bound + U
        return Approx(a.value @ b.value, bound)

    def times_public(self, c: float) -> Approx:
        return Approx(self.value * c, abs(c) * self.bound + E * self.value.abs() + E * self.bound + U)

    def times_int(self, k: int) -> Approx:
        return Approx(self.value * k, abs(k) * self.bound)

    def divide(self, n: int) -> Approx:
        return self if n == 1 else Approx(self.value / n, self.bound / n + U)

    def one_minus(self) -> Approx:
        return Approx(1.0 - self.value, self.bound)

    @property
    def T(self) -> Approx:
        return Approx(self.value.T, self.bound.T)

    def sum0(self) -> Approx:
        return Approx(self.value.sum(0), self.bound.sum(0))

    def relu(self) -> Approx:
        sure = self.value.abs() > self.bound
        return Approx(self.value.clamp(min=0), torch.where(sure, self.bound, self.value.abs() + self.bound))

    def relu_backward(self, grad: Approx) -> Approx:
        sure = self.value.abs() > self.bound
        value = grad.value * (self.value > 0)
        return Approx(value, torch.where(sure, grad.bound, grad.value.abs() + grad.bound))

    def sigmoid(self) -> Approx:
        return Approx(torch.sigmoid(self.value), ACTIVATION_ERROR + self.bound / 4)

    def tanh(self) -> Approx:
        return Approx(torch.tanh(self.value), ACTIVATION_ERROR + self.bound)


def approx_forward(layers: list[torch.nn.Module], x: Approx) -> tuple[Approx, list[Approx]]:
    """The output of plain torch ``layers`` on x, with bounds; and every layer's input (for backward)."""
    inputs = []
    for layer in layers:
        inputs.append(x)
        if isinstance(layer, torch.nn.Linear):
            x = x @ Approx.encoded(layer.weight).T
            if layer.bias is not None:
                x = x + Approx.encoded(layer.bias)
        elif isinstance(layer, torch.nn.ReLU):
            x = x.relu()
        elif isinstance(layer, torch.nn.Sigmoid):
            x = x.sigmoid()
        elif isinstance(layer, torch.nn.Tanh):
            x = x.tanh()
    return x, inputs


def approx_backward(layers: list[torch.nn.Module], inputs: list[Approx], grad: Approx, *, from_logit: bool,
                    input_grad: bool) -> tuple[dict[str, Approx], Approx | None]:
    """Parameter gradients (by state_dict name) and the input gradient, with bounds, in smpc.nn's order."""
    grads: dict[str, Approx] = {}
    result: Approx | None = grad
    for index in range(len(layers) - 1, -1, -1):
        layer, x, g = layers[index], inputs[index], result
        assert g is not None
        wants_input = index > 0 or input_grad
        if isinstance(layer, torch.nn.Linear):
            grads[f"{index}.weight"] = g.T @ x
            if layer.bias is not None:
                grads[f"{index}.bias"] = g.sum0()
            result = g @ Approx.encoded(layer.weight) if wants_input else None
        elif isinstance(layer, torch.nn.ReLU):
            result = x.relu_backward(g) if wants_input else None
        elif isinstance(layer, torch.nn.Sigmoid):
            if from_logit and index == len(layers) - 1:
                continue
            s = x.sigmoid()
            result = g * (s * s.one_minus()) if wants_input else None
        elif isinstance(layer, torch.nn.Tanh):
            t = x.tanh()
            result = g * (t * t).one_minus() if wants_input else None
    return grads, result


def torch_reference(model: torch.nn.Module, x: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Output, parameter gradients and input gradient by torch autograd (float64)."""
    model = model.double()
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    output = model(x)
    loss_of(output).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return output.detach(), grads, x.grad.detach()


def make_torch_model(kind: str, d_in: int, hidden: int, d_out: int, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    linear, relu, tanh, sigmoid = torch.nn.Linear, torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid
    layers: dict[str, Callable[[], list[torch.nn.Module]]] = {
        "logistic": lambda: [linear(d_in, d_out), sigmoid()],
        "relu": lambda: [linear(d_in, hidden), relu(), linear(hidden, d_out)],
        "relu-sigmoid": lambda: [linear(d_in, hidden), relu(), linear(hidden, d_out), sigmoid()],
        "tanh-sigmoid": lambda: [linear(d_in, hidden), tanh(), linear(hidden, d_out), sigmoid()],
        "relu-relu": lambda: [linear(d_in, hidden), relu(), linear(hidden, hidden, bias=False), relu(),
                              linear(hidden, d_out)],
    }
    return torch.nn.Sequential(*layers[kind]()).double()


def share_model_and_data(session: smpc.Session, model: torch.nn.Module, x: torch.Tensor
                         ) -> tuple[snn.Module, smpc.SharedTensor]:
    """The model from party 0, the data from the last party."""
    shared_model = snn.from_torch(model, session, owner=0)
    data_owner = session.world_size - 1
    return shared_model, session.share(x if session.rank == data_owner else None, owner=data_owner)


def logistic_data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=generator)
    truth = torch.randn(d, dtype=torch.float64, generator=generator)
    y = (x @ truth + 0.5 * torch.randn(n, dtype=torch.float64, generator=generator) > 0).to(torch.float64)
    return x, y.unsqueeze(1)
