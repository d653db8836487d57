"""Shared layers: ``Linear``, ``Sigmoid``, ``Tanh``, ``ReLU``, written with SharedTensor operations so that
``smpc.autograd`` derives their backward passes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from smpc.nn.init import InitDraws, initial_values
from smpc.nn.module import Module, Parameter
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session


class Linear(Module):
    """y = x W^T + b with a shared W (out_features x in_features) and b (out_features).

    ``init="joint"`` (default): nobody knows the start weights.  Every party draws its own contribution
    uniform(-B/sqrt(n), B/sqrt(n)) with B = 1/sqrt(in_features) (torch's default bound) and shares it; W and b
    are the sums.  The sum has torch's variance B^2/3 (its shape tends to a normal of that variance, within
    +-B sqrt(n) instead of +-B).  Each contribution comes from AES-CTR keyed by the OS's CSPRNG (``InitDraws``),
    so nobody can predict the sum; ``seed`` (an int, or an ``InitDraws`` several layers draw from) makes this
    party's contribution reproducible, for tests only: parties must not share or publish seeds.  Cost: n rounds
    (one sharing per party, weight and bias together).
    ``init="zeros"``: public zeros, no communication (fine for convex models such as logistic regression).

    Rounds: forward 2 (one matmul); backward 2 for grad_W = (x^T g)^T, 2 more for grad_x = g W only when the
    input requires a gradient (a data batch does not); grad_b = sum_rows g is local.
    """

    def __init__(self, session: Session, in_features: int, out_features: int, bias: bool = True, *,
                 init: str = "joint", seed: int | InitDraws | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        shapes: list[tuple[int, ...]] = [(out_features, in_features)] + ([(out_features,)] if bias else [])
        values = initial_values(session, shapes, in_features, init, seed)
        self.weight = Parameter(values[0])
        self.bias = Parameter(values[1]) if bias else None

    @classmethod
    def from_shared(cls, weight: SharedTensor, bias: SharedTensor | None) -> Linear:
        """A layer around given shared weights (W: out x in, b: out)."""
        if weight.dim() != 2 or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
            raise ValueError("Linear needs a 2-d weight (out x in) and a bias of shape (out,)")
        out_features, in_features = weight.shape
        # Public zeros cost nothing; they are replaced at once.
        layer = cls(weight.session, in_features, out_features, bias is not None, init="zeros")
        layer.weight = Parameter(weight)
        layer.bias = None if bias is None else Parameter(bias)
        return layer

    def forward(self, x: SharedTensor) -> SharedTensor:
        """x @ W^T + b: one matmul (2 rounds)."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of shape {tuple(x.shape)}")
        output = x @ self.weight.T
        return output if self.bias is None else output + self.bias

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        layer = torch.nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(values[prefix + "weight"])
            if self.bias is not None:
                layer.bias.copy_(values[prefix + "bias"])
        return layer

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None})"


class _Elementwise(Module):
    """A parameter-free layer applying one SharedTensor method."""

    method = ""
    torch_class: type[torch.nn.Module] = torch.nn.Identity

    def forward(self, x: SharedTensor) -> SharedTensor:
        result: SharedTensor = getattr(x, self.method)()
        return result

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return self.torch_class()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(_Elementwise):
    """s = sigmoid(x) (``SharedTensor.sigmoid``, max abs error 1e-3).  Backward g s (1 - s): 4 rounds; after
    BCELoss, skipped (the loss seeds the Sigmoid's input with the logit gradient (p - y) / N)."""

    method = "sigmoid"
    torch_class = torch.nn.Sigmoid


class Tanh(_Elementwise):
    """t = tanh(x) (``SharedTensor.tanh``, max abs error 1e-3).  Backward g (1 - t^2): 4 rounds."""

    method = "tanh"
    torch_class = torch.nn.Tanh


class ReLU(_Elementwise):
    """max(x, 0) (``SharedTensor.relu``: 9 rounds).  Backward: a product with the forward's comparison bit,
    1 round, exact; the gradient at 0 is 0, as torch's."""

    method = "relu"
    torch_class = torch.nn.ReLU
