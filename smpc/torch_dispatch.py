"""The torch functions a ``SharedTensor`` implements (``torch.add(x, y)``, ``torch.sigmoid(x)``, ...), for its
``__torch_function__``: each maps to the SharedTensor operation, with the public operand first or second; every
other torch function is NotImplemented (torch then raises a TypeError naming it)."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch

from smpc.tensor import SharedTensor, cat, stack, where


def _binary(name: str, forward: Callable[[SharedTensor, Any], SharedTensor],
            reverse: Callable[[SharedTensor, Any], SharedTensor]) -> Callable[..., SharedTensor]:
    """The handler of a two-operand torch function: ``forward(a, b)`` when the SharedTensor comes first,
    ``reverse(b, a)`` when it comes second (each spelled out, never a fallback)."""

    def handler(a: Any, b: Any, *, out: Any = None, **kwargs: Any) -> SharedTensor:
        if out is not None or kwargs:
            unsupported = "out" if out is not None else ", ".join(sorted(kwargs))
            raise TypeError(f"torch.{name}({unsupported}=...) is not supported for SharedTensors")
        if isinstance(a, SharedTensor):
            return forward(a, b)
        if isinstance(b, SharedTensor):
            return reverse(b, a)
        raise TypeError(f"torch.{name} needs a SharedTensor operand")

    return handler


def _maximum(a: SharedTensor, b: Any) -> SharedTensor:
    """Elementwise max(a, b) (torch.maximum): b + relu(a - b), one comparison and one product; exact."""
    return (a - b).relu() + b


def _minimum(a: SharedTensor, b: Any) -> SharedTensor:
    """Elementwise min(a, b) (torch.minimum): a - relu(a - b); exact."""
    return a - (a - b).relu()


#: Two-operand torch functions: (forward(shared, other), reverse(shared, other)) for other - shared order.
_BINARY = {
    torch.add: ("add", lambda a, b: a + b, lambda b, a: b + a),
    torch.sub: ("sub", lambda a, b: a - b, lambda b, a: b.__rsub__(a)),
    torch.subtract: ("subtract", lambda a, b: a - b, lambda b, a: b.__rsub__(a)),
    torch.mul: ("mul", lambda a, b: a * b, lambda b, a: b * a),
    torch.multiply: ("multiply", lambda a, b: a * b, lambda b, a: b * a),
    torch.div: ("div", lambda a, b: a / b, lambda b, a: b.__rtruediv__(a)),
    torch.true_divide: ("true_divide", lambda a, b: a / b, lambda b, a: b.__rtruediv__(a)),
    torch.divide: ("divide", lambda a, b: a / b, lambda b, a: b.__rtruediv__(a)),
    torch.matmul: ("matmul", lambda a, b: a @ b, lambda b, a: b.__rmatmul__(a)),
    torch.maximum: ("maximum", _maximum, lambda b, a: _maximum(b, a)),
    torch.minimum: ("minimum", _minimum, lambda b, a: _minimum(b, a)),
}


def _binary_method(name: str) -> Callable[..., SharedTensor]:
    """A comparison: a.<name>(b), or the reflected comparison of b with a when the SharedTensor is second."""
    reflected = {"lt": "gt", "gt": "lt", "le": "ge", "ge": "le", "eq": "eq", "ne": "ne"}

    def handler(a: Any, b: Any) -> SharedTensor:
        if isinstance(a, SharedTensor):
            return getattr(a, name)(b)
        if isinstance(b, SharedTensor):
            return getattr(b, reflected[name])(a)
        raise TypeError(f"torch.{name} needs a SharedTensor operand")

    return handler


def _unary(name: str, method: Callable[..., SharedTensor]) -> Callable[..., SharedTensor]:
    """The handler of a torch function whose first argument must be the SharedTensor."""

    def handler(a: Any, *args: Any, **kwargs: Any) -> SharedTensor:
        if not isinstance(a, SharedTensor):
            raise TypeError(f"torch.{name} takes the SharedTensor as its first argument here")
        return method(a, *args, **kwargs)

    return handler


#: torch functions a SharedTensor implements, and how.  Read-only; everything else is NotImplemented.
TORCH_FUNCTIONS: MappingProxyType = MappingProxyType(
    {
        torch.cat: cat,
        torch.concat: cat,
        torch.stack: stack,
        **{function: _binary(*spec) for function, spec in _BINARY.items()},
        torch.where: where,
        torch.lt: _binary_method("lt"),
        torch.gt: _binary_method("gt"),
        torch.le: _binary_method("le"),
        torch.ge: _binary_method("ge"),
        torch.eq: _binary_method("eq"),
        torch.ne: _binary_method("ne"),
        **{getattr(torch, name): _unary(name, getattr(SharedTensor, name)) for name in (
            "neg", "sum", "mean", "transpose", "reshape", "flatten", "t", "exp", "sigmoid", "tanh", "reciprocal",
            "sqrt", "rsqrt", "log", "sign", "abs", "relu", "clamp", "clip", "max", "min", "argmax", "argmin")},
        **{function: _unary(name, method) for function, name, method in (
            (torch.softmax, "softmax", lambda a, dim, dtype=None: a.softmax(dim)),
            (torch.log_softmax, "log_softmax", lambda a, dim, dtype=None: a.log_softmax(dim)),
            (torch.nn.functional.softmax, "nn.functional.softmax",
             lambda a, dim=None, _stacklevel=3, dtype=None: a.softmax(dim)),
            (torch.nn.functional.log_softmax, "nn.functional.log_softmax",
             lambda a, dim=None, _stacklevel=3, dtype=None: a.log_softmax(dim)),
            (torch.nn.functional.relu, "nn.functional.relu", lambda a, inplace=False: a.relu()),
        )},
    }
)


def supports_torch_function(function: object) -> bool:
    """Whether ``function`` (a torch function) dispatches to SharedTensor through ``__torch_function__``."""
    return function in TORCH_FUNCTIONS
