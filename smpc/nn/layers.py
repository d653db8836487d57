"""Shared layers: ``Linear``, ``Sigmoid``, ``Tanh``, ``ReLU``, each with its hand-derived backward."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from smpc.nn.init import InitDraws, _joint_values
from smpc.nn.module import Module, Parameter, _take
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
    """

    def __init__(self, session: Session, in_features: int, out_features: int, bias: bool = True, *,
                 init: str = "joint", seed: int | InitDraws | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        shapes: list[tuple[int, ...]] = [(out_features, in_features)] + ([(out_features,)] if bias else [])
        if init == "joint":
            values = _joint_values(session, shapes, in_features, seed)
        elif init == "zeros":
            if seed is not None:
                raise ValueError("seed only applies to init='joint'")
            values = [session.public(torch.zeros(shape, dtype=torch.float64)) for shape in shapes]
        else:
            raise ValueError(f"init must be 'joint' or 'zeros', got {init!r}")
        self.weight = Parameter(values[0])
        self.bias = Parameter(values[1]) if bias else None
        self._input: SharedTensor | None = None

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

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        yield "weight", self.weight
        if self.bias is not None:
            yield "bias", self.bias

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        """x @ W^T + b: one matmul (2 rounds)."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of shape {tuple(x.shape)}")
        if record:
            self._input = x
        output = x @ self.weight.data.T
        return output if self.bias is None else output + self.bias.data

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        """grad_W = g^T x (2 rounds), grad_b = sum_rows g (local), grad_x = g W (2 rounds, only if asked)."""
        x = _take(self, "_input")
        g = grad.reshape(-1, self.out_features)
        self.weight.accumulate(g.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self.bias.accumulate(g.sum(0))
        if not input_grad:
            return None
        return (g @ self.weight.data).reshape(x.shape)

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        layer = torch.nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(values[prefix + "weight"])
            if self.bias is not None:
                layer.bias.copy_(values[prefix + "bias"])
        return layer

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None})"


class Sigmoid(Module):
    """s = sigmoid(x) (``SharedTensor.sigmoid``, max abs error 1e-3).  Backward g s (1 - s): 4 rounds; after
    BCELoss, skipped (the loss hands the logit gradient (p - y) / N directly)."""

    def __init__(self) -> None:
        super().__init__()
        self._output: SharedTensor | None = None

    @property
    def ends_with_sigmoid(self) -> bool:
        return True

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        output = x.sigmoid()
        if record:
            self._output = output
        return output

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        s = _take(self, "_output")
        if from_logit:
            return grad
        return grad * (s * (1.0 - s)) if input_grad else None

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Sigmoid()

    def __repr__(self) -> str:
        return "Sigmoid()"


class Tanh(Module):
    """t = tanh(x) (``SharedTensor.tanh``, max abs error 1e-3).  Backward g (1 - t^2): 4 rounds."""

    def __init__(self) -> None:
        super().__init__()
        self._output: SharedTensor | None = None

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        output = x.tanh()
        if record:
            self._output = output
        return output

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        t = _take(self, "_output")
        return grad * (1.0 - t * t) if input_grad else None

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Tanh()

    def __repr__(self) -> str:
        return "Tanh()"


class ReLU(Module):
    """max(x, 0) as where([x > 0], x, 0): 9 rounds, exactly what relu() costs, but the comparison bit is kept
    so backward is where(mask, g, 0): 1 round (a bit product needs no truncation).  Exact; the gradient at 0
    is 0, as torch's."""

    def __init__(self) -> None:
        super().__init__()
        self._mask: SharedTensor | None = None

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        if not record:
            return x.relu()
        mask = x > 0
        self._mask = mask
        return _select(mask, x)

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        mask = _take(self, "_mask")
        return _select(mask, grad) if input_grad else None

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.ReLU()

    def __repr__(self) -> str:
        return "ReLU()"


def _select(mask: SharedTensor, value: SharedTensor) -> SharedTensor:
    """value where the comparison bit is 1, else 0: one bit product (1 round, exact)."""
    return value.where(mask, 0.0)
