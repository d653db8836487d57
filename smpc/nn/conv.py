"""Convolution, pooling and shape layers on shares: ``Conv1d``, ``Conv2d``, ``AvgPool2d``, ``MaxPool2d``,
``Flatten``, ``Softmax``, ``LogSoftmax``, each a thin module over ``smpc.nn.functional`` or a SharedTensor
method (costs and error bounds there); autograd derives their backward passes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from smpc.nn import functional as F
from smpc.nn.init import InitDraws, initial_values
from smpc.nn.module import Module, Parameter
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session

Size = int | tuple[int, ...]


class _ConvNd(Module):
    """Shared weight (out, in, *kernel) and bias (out), drawn jointly (as ``Linear``: fan-in in * prod(kernel))
    or given (``from_shared``)."""

    dims = 2

    def __init__(self, session: Session, in_channels: int, out_channels: int, kernel_size: Size,
                 stride: Size = 1, padding: Size = 0, bias: bool = True, *, init: str = "joint",
                 seed: int | InitDraws | None = None) -> None:
        super().__init__()
        kernel = _tuple(kernel_size, self.dims, "kernel_size")
        if in_channels < 1 or out_channels < 1 or min(kernel) < 1:
            raise ValueError(f"{type(self).__name__} needs positive channels and kernel, got {in_channels} -> "
                             f"{out_channels}, kernel {kernel}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.stride, self.padding = _tuple(stride, self.dims, "stride"), _tuple(padding, self.dims, "padding")
        shapes: list[tuple[int, ...]] = [(out_channels, in_channels, *kernel)] + ([(out_channels,)] if bias else [])
        values = initial_values(session, shapes, in_channels * int(torch.tensor(kernel).prod()), init, seed)
        self.weight = Parameter(values[0])
        self.bias = Parameter(values[1]) if bias else None

    @classmethod
    def from_shared(cls, weight: SharedTensor, bias: SharedTensor | None, stride: Size = 1,
                    padding: Size = 0) -> _ConvNd:
        """A layer around given shared weights (out, in, *kernel) and bias (out,)."""
        if weight.dim() != cls.dims + 2 or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
            raise ValueError(f"{cls.__name__} needs a {cls.dims + 2}-d weight and a bias of shape (out,)")
        out_channels, in_channels, *kernel = weight.shape
        layer = cls(weight.session, in_channels, out_channels, tuple(kernel) if cls.dims == 2 else kernel[0],
                    stride, padding, bias is not None, init="zeros")
        layer.weight = Parameter(weight)
        layer.bias = None if bias is None else Parameter(bias)
        return layer

    def _plain(self, dtype: torch.dtype) -> torch.nn.Conv1d | torch.nn.Conv2d:
        raise NotImplementedError

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        layer = self._plain(dtype)
        with torch.no_grad():
            layer.weight.copy_(values[prefix + "weight"])
            if layer.bias is not None:
                layer.bias.copy_(values[prefix + "bias"])
        return layer

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None})")


class Conv2d(_ConvNd):
    """torch.nn.Conv2d on shares (no dilation, no groups): ``functional.conv2d``, im2col by a public index and
    one ring matmul (2 rounds forward; backward 2 for the weight, 2 more for the input when it needs one)."""

    dims = 2

    def forward(self, x: SharedTensor) -> SharedTensor:
        return F.conv2d(x, self.weight, self.bias, _two(self.stride), _two(self.padding))

    def _plain(self, dtype: torch.dtype) -> torch.nn.Conv2d:
        return torch.nn.Conv2d(self.in_channels, self.out_channels, _two(self.kernel_size), stride=_two(self.stride),
                               padding=_two(self.padding), bias=self.bias is not None, dtype=dtype)


class Conv1d(_ConvNd):
    """torch.nn.Conv1d on shares (no dilation, no groups): ``functional.conv1d`` (costs as Conv2d)."""

    dims = 1

    def forward(self, x: SharedTensor) -> SharedTensor:
        return F.conv1d(x, self.weight, self.bias, self.stride[0], self.padding[0])

    def _plain(self, dtype: torch.dtype) -> torch.nn.Conv1d:
        return torch.nn.Conv1d(self.in_channels, self.out_channels, self.kernel_size[0], stride=self.stride[0],
                               padding=self.padding[0], bias=self.bias is not None, dtype=dtype)


class _Pool2d(Module):
    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> None:
        super().__init__()
        self.kernel_size = _tuple(kernel_size, 2, "kernel_size")
        self.stride = self.kernel_size if stride is None else _tuple(stride, 2, "stride")
        self.padding = _tuple(padding, 2, "padding")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})"


class MaxPool2d(_Pool2d):
    """torch.nn.MaxPool2d (no dilation, no ceil_mode): ``functional.max_pool2d``, a tournament of secure
    comparisons; exact; backward routes each window's gradient to its maximum (1 round)."""

    def forward(self, x: SharedTensor) -> SharedTensor:
        return F.max_pool2d(x, _two(self.kernel_size), _two(self.stride), _two(self.padding))

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.MaxPool2d(self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """torch.nn.AvgPool2d (count_include_pad=True): ``functional.avg_pool2d``, window sums and one public
    division (1 round)."""

    def forward(self, x: SharedTensor) -> SharedTensor:
        return F.avg_pool2d(x, _two(self.kernel_size), _two(self.stride), _two(self.padding))

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.AvgPool2d(_two(self.kernel_size), _two(self.stride), _two(self.padding))


class Flatten(Module):
    """torch.nn.Flatten: local, exact, no rounds."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: SharedTensor) -> SharedTensor:
        return F.flatten(x, self.start_dim, self.end_dim)

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Flatten(self.start_dim, self.end_dim)

    def __repr__(self) -> str:
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"


class Softmax(Module):
    """torch.nn.Softmax(dim): ``SharedTensor.softmax`` (error and rounds in protocols.approx.softmax)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: SharedTensor) -> SharedTensor:
        return x.softmax(self.dim)

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Softmax(self.dim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class LogSoftmax(Softmax):
    """torch.nn.LogSoftmax(dim): ``SharedTensor.log_softmax`` (error and rounds in protocols.approx.softmax)."""

    def forward(self, x: SharedTensor) -> SharedTensor:
        return x.log_softmax(self.dim)

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.LogSoftmax(self.dim)


def _tuple(value: Size | tuple[int, ...], dims: int, name: str) -> tuple[int, ...]:
    result = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(result) != dims or not all(isinstance(v, int) for v in result):
        raise ValueError(f"{name} must be an int or {dims} ints, not {value!r}")
    return result


def _two(value: tuple[int, ...]) -> tuple[int, int]:
    return value[0], value[1]
