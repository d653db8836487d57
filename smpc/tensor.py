"""``SharedTensor``: a secret-shared fixed-point tensor that behaves like a torch tensor where it safely can.

It wraps this party's int64 share and its session; it is not a torch.Tensor subclass.  Arithmetic with
another SharedTensor, a Python number or a public tensor broadcasts as torch does.  Torch functions we
support dispatch through ``__torch_function__``; any other raises torch's TypeError.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

import protocols
from protocols.approx import exp as approx_exp
from protocols.approx import log as approx_log
from protocols.approx import reciprocal as approx_reciprocal
from protocols.approx import sigmoid as approx_sigmoid
from protocols.approx import softmax as approx_softmax
from protocols.approx import sqrt as approx_sqrt

if TYPE_CHECKING:
    from smpc.session import Session

Index = Any


class SharedTensor:
    """A secret-shared tensor of one session.  Values stay secret until ``reveal``."""

    __slots__ = ("_session", "_share", "_bit")

    def __init__(self, session: Session, share: torch.Tensor, *, bit: torch.Tensor | None = None) -> None:
        if share.dtype != torch.int64:
            raise TypeError("a share is an int64 tensor of ring elements")
        self._session = session
        self._share = share
        # Comparisons also keep their result as an unscaled 0/1 share, so that where() needs one product
        # without truncation; every other operation drops it.
        self._bit = bit

    # -- metadata (public) ----------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        return self._session

    @property
    def shape(self) -> torch.Size:
        return self._share.shape

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self._share.shape if dim is None else self._share.shape[dim]

    def dim(self) -> int:
        return self._share.dim()

    @property
    def ndim(self) -> int:
        return self._share.dim()

    def numel(self) -> int:
        return self._share.numel()

    def __len__(self) -> int:
        return len(self._share)

    @property
    def local_share(self) -> torch.Tensor:
        """This party's raw int64 share (a copy), for audits and tests.  Uniformly random on its own."""
        return self._share.clone()

    def __repr__(self) -> str:
        return f"SharedTensor(shape={tuple(self.shape)}, party={self._session.rank})"

    def __bool__(self) -> bool:
        raise TypeError("a SharedTensor has no truth value: branching on a secret would reveal it")

    def __float__(self) -> float:
        raise TypeError("a SharedTensor cannot be converted to a number; call reveal() first")

    __int__ = __float__
    __index__ = __float__

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("a SharedTensor cannot be converted to an array; call reveal() first")

    # -- data out -------------------------------------------------------------------------------------
    @overload
    def reveal(self, to: None = None) -> torch.Tensor: ...

    @overload
    def reveal(self, to: int) -> torch.Tensor | None: ...

    def reveal(self, to: int | None = None) -> torch.Tensor | None:
        """Open the value, as float64: to every party (``to=None``) or to party ``to`` only; others get None
        (``protocols.reveal``: cost there)."""
        opened = protocols.reveal(self._party, self._share, to=to)
        return None if opened is None else self._session.encoding.decode(opened)

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def _party(self) -> protocols.Party:
        return self._session.party

    def _new(self, share: torch.Tensor) -> SharedTensor:
        return SharedTensor(self._session, share)

    def _same_session(self, other: SharedTensor) -> None:
        if other._session is not self._session:
            raise ValueError("cannot combine SharedTensors of different sessions")

    # -- linear operations (local) --------------------------------------------------------------------
    def __add__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            self._same_session(other)
            return self._new(self._share + other._share)
        encoded = self._session.encoding.encode(_public(other))
        return self._new(protocols.add_public(self._party, self._share, encoded))

    __radd__ = __add__

    def __neg__(self) -> SharedTensor:
        return self._new(-self._share)

    def neg(self) -> SharedTensor:
        return -self

    def __sub__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            self._same_session(other)
            return self._new(self._share - other._share)
        return self + (-_public(other))

    def __rsub__(self, other: Any) -> SharedTensor:
        return (-self) + other

    # -- products -------------------------------------------------------------------------------------
    def __mul__(self, other: Any) -> SharedTensor:
        """Elementwise product: shared x shared (``protocols.mul``), shared x public float (a local product,
        then a truncation), shared x public integer (Python int, integer tensor: exact, no communication)."""
        if isinstance(other, SharedTensor):
            self._same_session(other)
            return self._new(protocols.mul(self._party, self._share, other._share))
        public, is_integer = _public_operand(other)
        if is_integer:
            return self._new(protocols.mul_public(self._party, self._share, public, rescale=False))
        encoded = self._session.encoding.encode(public)
        return self._new(protocols.mul_public(self._party, self._share, encoded, rescale=True))

    __rmul__ = __mul__

    def __matmul__(self, other: Any) -> SharedTensor:
        """Matrix product (vectors, matrices, batched): shared @ shared is ``protocols.matmul``."""
        if isinstance(other, SharedTensor):
            self._same_session(other)
            return self._new(protocols.matmul(self._party, self._share, other._share))
        return self._matmul_public(other, left=False)

    def __rmatmul__(self, other: Any) -> SharedTensor:
        return self._matmul_public(other, left=True)

    def _matmul_public(self, other: Any, *, left: bool) -> SharedTensor:
        public, is_integer = _public_operand(other)
        if not is_integer:
            public = self._session.encoding.encode(public)
        return self._new(
            protocols.matmul_public(self._party, self._share, public, rescale=not is_integer, left=left)
        )

    def mul(self, other: Any) -> SharedTensor:
        return self * other

    def matmul(self, other: Any) -> SharedTensor:
        return self @ other

    def square(self) -> SharedTensor:
        return self * self

    # -- comparisons (exact; results are shared 0.0 / 1.0) --------------------------------------------
    def _from_bit(self, bit: torch.Tensor) -> SharedTensor:
        return SharedTensor(self._session, bit * self._session.encoding.scale, bit=bit)

    def _difference(self, other: Any) -> torch.Tensor:
        return (self - other)._share

    def __lt__(self, other: Any) -> SharedTensor:
        """[x < y] elementwise as shared 0/1, exact (``protocols.compare.ltz``: cost there)."""
        return self._from_bit(protocols.ltz(self._party, self._difference(other)))

    def __gt__(self, other: Any) -> SharedTensor:
        return self._from_bit(protocols.ltz(self._party, -self._difference(other)))

    def __le__(self, other: Any) -> SharedTensor:
        above = protocols.ltz(self._party, -self._difference(other))
        return self._from_bit(_one_like(self._party, self._share) - above)

    def __ge__(self, other: Any) -> SharedTensor:
        below = protocols.ltz(self._party, self._difference(other))
        return self._from_bit(_one_like(self._party, self._share) - below)

    def eq(self, other: Any) -> SharedTensor:
        """[x == y] elementwise: 1 - [x < y] - [y < x], both in one batched comparison."""
        difference = self._difference(other)
        both = protocols.ltz(self._party, torch.stack([difference, -difference]))
        return self._from_bit(_one_like(self._party, difference) - both[0] - both[1])

    def ne(self, other: Any) -> SharedTensor:
        difference = self._difference(other)
        both = protocols.ltz(self._party, torch.stack([difference, -difference]))
        return self._from_bit(both[0] + both[1])

    __eq__ = eq  # type: ignore[assignment]
    __ne__ = ne  # type: ignore[assignment]
    __hash__ = object.__hash__  # identity, as torch.Tensor

    def lt(self, other: Any) -> SharedTensor:
        return self < other

    def gt(self, other: Any) -> SharedTensor:
        return self > other

    def le(self, other: Any) -> SharedTensor:
        return self <= other

    def ge(self, other: Any) -> SharedTensor:
        return self >= other

    def sign(self) -> SharedTensor:
        """-1, 0 or 1 as torch.sign (``protocols.compare.sign``)."""
        return self._new(protocols.sign(self._party, self._share) * self._session.encoding.scale)

    def abs(self) -> SharedTensor:
        """|x| (``protocols.compare.absolute``)."""
        return self._new(protocols.absolute(self._party, self._share))

    def __abs__(self) -> SharedTensor:
        return self.abs()

    def relu(self) -> SharedTensor:
        """max(x, 0) (``protocols.compare.relu``)."""
        return self._new(protocols.relu(self._party, self._share))

    def where(self, condition: SharedTensor, other: Any) -> SharedTensor:
        """torch.Tensor.where: self where condition, else other."""
        return where(condition, self, other)

    def clamp(self, min: Any = None, max: Any = None) -> SharedTensor:  # noqa: A002 - torch's names
        """Clamp to [min, max] (public numbers, tensors or SharedTensors), as torch: min(max(x, min), max), so
        every element becomes ``max`` where min > max.  Public bounds with min <= max: min + relu(x - min) -
        relu(x - max), both comparisons in one batch, 9 rounds; otherwise the two clamps in turn, 18 rounds.
        Exact."""
        if min is None and max is None:
            raise ValueError("clamp needs min, max or both")
        if max is None:
            return (self - min).relu() + min
        if min is None:
            return self - (self - max).relu()
        ordered = not isinstance(min, SharedTensor) and not isinstance(max, SharedTensor) and bool(
            (_public(min).to(torch.float64) <= _public(max).to(torch.float64)).all())
        if not ordered:
            return self.clamp(min=min).clamp(max=max)
        low, high = self - min, self - max
        stacked = torch.stack([low._share, high._share])
        relus = protocols.relu(self._party, stacked)
        return self._new(relus[0] - relus[1]) + min

    def clip(self, min: Any = None, max: Any = None) -> SharedTensor:  # noqa: A002
        return self.clamp(min, max)

    def max(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """Maximum over all elements, or along ``dim`` (``protocols.compare.maximum``)."""
        values, _ = self._tournament(dim)
        return values.unsqueeze(dim) if keepdim and dim is not None else values

    def min(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """Minimum: the maximum of -x, negated."""
        return -((-self).max(dim, keepdim))

    def argmax(self, dim: int | None = None, keepdim: bool = True) -> SharedTensor:
        """A shared one-hot (0.0 / 1.0) marking the first maximum along ``dim`` (over all elements if None),
        with the input's shape: the position of a maximum is secret, so no integer index is returned."""
        _, onehot = self._tournament(dim)
        return onehot

    def argmin(self, dim: int | None = None, keepdim: bool = True) -> SharedTensor:
        return (-self).argmax(dim, keepdim)

    def _tournament(self, dim: int | None) -> tuple[SharedTensor, SharedTensor]:
        source = self.reshape(-1) if dim is None else self
        values, onehot = protocols.maximum(self._party, source._share, 0 if dim is None else dim)
        onehot = onehot.reshape(self.shape)
        return self._new(values), SharedTensor(self._session, onehot * self._session.encoding.scale, bit=onehot)

    # -- approximations (documented domain, error and cost in protocols/approx) -----------------------
    def exp(self, method: str = "piecewise") -> SharedTensor:
        """e^x (``protocols.approx.exp.exp``: domain, error and cost there)."""
        return self._new(approx_exp.exp(self._party, self._share, method=method))

    def sigmoid(self, method: str = "piecewise") -> SharedTensor:
        """1 / (1 + e^-x) (``protocols.approx.sigmoid.sigmoid``: error and cost there)."""
        return self._new(approx_sigmoid.sigmoid(self._party, self._share, method=method))

    def tanh(self, method: str = "piecewise") -> SharedTensor:
        """tanh(x) (``protocols.approx.sigmoid.tanh``: error and cost there)."""
        return self._new(approx_sigmoid.tanh(self._party, self._share, method=method))

    def reciprocal(self, method: str = "poly4", positive: bool = False) -> SharedTensor:
        """1/x (``protocols.approx.reciprocal.reciprocal``: domain, error and cost there).  ``positive=True``
        skips the sign (half the comparisons) and returns 0 for x < 0."""
        return self._new(approx_reciprocal.reciprocal(self._party, self._share, method=method, signed=not positive))

    def sqrt(self, method: str = "poly4") -> SharedTensor:
        """sqrt(x); 0 for x <= 0 (``protocols.approx.sqrt.sqrt``: domain, error and cost there)."""
        return self._new(approx_sqrt.sqrt(self._party, self._share, method=method))

    def rsqrt(self, method: str = "poly4") -> SharedTensor:
        """1/sqrt(x); 0 for x <= 0 (``protocols.approx.sqrt.inv_sqrt``: domain, error and cost there)."""
        return self._new(approx_sqrt.inv_sqrt(self._party, self._share, method=method))

    inv_sqrt = rsqrt

    def log(self, method: str = "poly4") -> SharedTensor:
        """ln(x); 0 for x <= 0 (``protocols.approx.log.log``: domain, error and cost there)."""
        return self._new(approx_log.log(self._party, self._share, method=method))

    def softmax(self, dim: int) -> SharedTensor:
        """softmax along ``dim`` (``protocols.approx.softmax.softmax``)."""
        return self._new(approx_softmax.softmax(self._party, self._share, dim))

    def log_softmax(self, dim: int) -> SharedTensor:
        """log_softmax along ``dim`` (``protocols.approx.softmax.log_softmax``)."""
        return self._new(approx_softmax.log_softmax(self._party, self._share, dim))

    def __truediv__(self, other: Any) -> SharedTensor:
        """x / y.  Shared y: x * reciprocal(y) (y's sign handled; see ``reciprocal`` for the error).  Public
        integer y: one exact division (truncation, error below one unit).  Public float y: x * (1/y)."""
        if isinstance(other, SharedTensor):
            self._same_session(other)
            return self * other.reciprocal()
        public, is_integer = _public_operand(other)
        if is_integer and public.dim() == 0 and int(public) > 0 and self._party.truncation == "dealer":
            return self._new(protocols.truncate(self._party, self._share, divisor=int(public)))
        if bool((public == 0).any()):
            raise ZeroDivisionError("division of a SharedTensor by a public zero")
        return self * (1.0 / public.to(torch.float64))

    def __rtruediv__(self, other: Any) -> SharedTensor:
        return self.reciprocal() * other

    def div(self, other: Any) -> SharedTensor:
        return self / other

    # -- reductions -----------------------------------------------------------------------------------
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> SharedTensor:
        """Sum (local, exact).  The sum of values must itself stay inside the fixed-point range."""
        if dim is None:
            return self._new(self._share.sum())
        return self._new(self._share.sum(dim=dim if isinstance(dim, int) else tuple(dim), keepdim=keepdim))

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> SharedTensor:
        """Mean: the exact sum divided by the public count with a truncation (error below one unit)."""
        total = self.sum(dim, keepdim)
        count = self.numel() // max(total.numel(), 1) if self.numel() else 0
        if count == 0:
            raise ValueError("mean of an empty SharedTensor")
        if self._party.truncation == "dealer":
            return self._new(protocols.truncate(self._party, total._share, divisor=count))
        return total * (1.0 / count)

    # -- shape operations (local) ---------------------------------------------------------------------
    @property
    def T(self) -> SharedTensor:
        if self.dim() > 2:
            raise ValueError(".T is defined for tensors of at most 2 dimensions; use transpose(dim0, dim1)")
        return self._new(self._share.t())

    def t(self) -> SharedTensor:
        return self.T

    def transpose(self, dim0: int, dim1: int) -> SharedTensor:
        return self._new(self._share.transpose(dim0, dim1))

    def permute(self, *dims: int) -> SharedTensor:
        return self._new(self._share.permute(*dims))

    def reshape(self, *shape: Any) -> SharedTensor:
        return self._new(self._share.reshape(*shape))

    def view(self, *shape: Any) -> SharedTensor:
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> SharedTensor:
        return self._new(self._share.flatten(start_dim, end_dim))

    def unsqueeze(self, dim: int) -> SharedTensor:
        return self._new(self._share.unsqueeze(dim))

    def squeeze(self, dim: int | None = None) -> SharedTensor:
        return self._new(self._share.squeeze() if dim is None else self._share.squeeze(dim))

    def expand(self, *sizes: Any) -> SharedTensor:
        return self._new(self._share.expand(*sizes))

    def __getitem__(self, index: Index) -> SharedTensor:
        if _contains_shared(index):
            raise TypeError("indexing with a SharedTensor would reveal the index; use a public index")
        return self._new(self._share[index])

    # -- torch functions ------------------------------------------------------------------------------
    @classmethod
    def __torch_function__(
        cls, func: Callable[..., Any], types: tuple[type, ...], args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        handler = _TORCH_FUNCTIONS.get(func)
        if handler is None:
            return NotImplemented
        return handler(*args, **(kwargs or {}))


def _one_like(party: protocols.Party, like: torch.Tensor) -> torch.Tensor:
    return torch.full_like(like, 1 if party.rank == 0 else 0)


def where(condition: SharedTensor, if_true: Any, if_false: Any) -> SharedTensor:
    """``if_true`` where the shared 0/1 ``condition`` is 1, else ``if_false`` (shared or public, broadcasting).

    A condition straight from a comparison costs one product (1 round); any other 0/1 SharedTensor costs a
    product and a truncation (2 rounds), exact either way for 0/1 conditions.
    """
    if not isinstance(condition, SharedTensor):
        raise TypeError("where() needs a SharedTensor condition (a public one would not need MPC)")
    session = condition.session
    true_part = if_true if isinstance(if_true, SharedTensor) else session.public(_public(if_true))
    false_part = if_false if isinstance(if_false, SharedTensor) else session.public(_public(if_false))
    delta = true_part - false_part
    if condition._bit is not None:
        product = protocols.mul(session.party, condition._bit, delta._share, rescale=False)
        return false_part + condition._new(product)
    return false_part + condition * delta


def _contains_shared(index: Index) -> bool:
    if isinstance(index, SharedTensor):
        return True
    return isinstance(index, tuple) and any(isinstance(i, SharedTensor) for i in index)


def _public(value: Any) -> torch.Tensor:
    if isinstance(value, SharedTensor):
        raise TypeError("expected a public value")
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (bool, numbers.Integral)):
        return torch.as_tensor(int(value), dtype=torch.int64)
    if isinstance(value, numbers.Real):
        return torch.as_tensor(float(value), dtype=torch.float64)
    if isinstance(value, (list, tuple)):
        tensor = torch.as_tensor(value)
        return tensor.to(torch.float64) if tensor.is_floating_point() else tensor
    raise TypeError(f"unsupported operand type {type(value).__name__} for a SharedTensor")


def _public_operand(value: Any) -> tuple[torch.Tensor, bool]:
    """(tensor, is_integer): Python ints, bools and integer tensors multiply exactly, floats rescale."""
    tensor = _public(value)
    if tensor.is_floating_point() or tensor.is_complex():
        return tensor, False
    return tensor.to(torch.int64), True


def _shared_list(tensors: Sequence[Any], name: str) -> list[SharedTensor]:
    items = list(tensors)
    if not items or not all(isinstance(t, SharedTensor) for t in items):
        raise TypeError(f"torch.{name} of SharedTensors needs a non-empty sequence of SharedTensors only")
    for t in items[1:]:
        items[0]._same_session(t)
    return items


def cat(tensors: Sequence[SharedTensor], dim: int = 0, *, out: Any = None) -> SharedTensor:
    """torch.cat of SharedTensors (``torch.cat`` on SharedTensors dispatches here): local, no communication."""
    if out is not None:
        raise TypeError("torch.cat(out=...) is not supported for SharedTensors")
    items = _shared_list(tensors, "cat")
    return items[0]._new(torch.cat([t._share for t in items], dim=dim))


def stack(tensors: Sequence[SharedTensor], dim: int = 0, *, out: Any = None) -> SharedTensor:
    """torch.stack of SharedTensors (``torch.stack`` dispatches here): local, no communication."""
    if out is not None:
        raise TypeError("torch.stack(out=...) is not supported for SharedTensors")
    items = _shared_list(tensors, "stack")
    return items[0]._new(torch.stack([t._share for t in items], dim=dim))


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
_TORCH_FUNCTIONS: MappingProxyType = MappingProxyType(
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
