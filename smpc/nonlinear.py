# mypy: disable-error-code="misc"
# (the methods below annotate self as SharedTensor, the class that mixes them in: mypy wants a supertype there)
"""Comparisons, ``where`` and approximations of ``SharedTensor`` (a mixin: ``smpc.tensor`` holds the class, its
data, products and structure).  Every method here runs a protocol of ``protocols`` through the session's family;
their steps, costs and errors are in those protocols' docstrings.  Rounds below are the dealer family's; in the
replicated family a comparison (``ltz``) of up to 1,024 elements in one call takes 3 rounds instead of 8
(``protocols.additive.helped``), and a call returns to replicated shares in one more round."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

import protocols
from protocols.approx import exp as approx_exp
from protocols.approx import log as approx_log
from protocols.approx import reciprocal as approx_reciprocal
from protocols.approx import sigmoid as approx_sigmoid
from protocols.approx import softmax as approx_softmax
from protocols.approx import sqrt as approx_sqrt
from protocols.family import Shares, map_parts, zip_parts
from smpc import (
    autograd,
    gradients,
    tensor,  # the module that imports this one: its names are read when a method runs
)
from smpc.operands import public_operand, public_tensor

if TYPE_CHECKING:
    from smpc.session import Session
    from smpc.tensor import SharedTensor


class Nonlinear:
    """The comparisons (exact; results are shared 0.0 / 1.0), approximations and division of a SharedTensor."""

    __slots__ = ()

    # -- comparisons (exact; results are shared 0.0 / 1.0) --------------------------------------------
    def _from_bit(self: SharedTensor, bit: Shares) -> SharedTensor:
        return tensor.bit_tensor(self._session, bit)

    def _ltz(self: SharedTensor, value: SharedTensor) -> Shares:
        """Unscaled shares of [value < 0] (``protocols.additive.compare.ltz``: exact; cost there); a value whose
        truncation waits (x @ w - y) is settled inside the call."""
        return value._call_shares(protocols.ltz)

    def _one_minus(self: SharedTensor, bit: Shares) -> Shares:
        ones = self._family.public(torch.ones(bit[0].shape, dtype=torch.int64))
        return zip_parts(ones, bit, torch.sub)

    def __lt__(self: SharedTensor, other: Any) -> SharedTensor:
        """[x < y] elementwise as shared 0/1, exact (``protocols.additive.compare.ltz``: cost there)."""
        return self._from_bit(self._ltz(self - other))

    def __gt__(self: SharedTensor, other: Any) -> SharedTensor:
        return self._from_bit(self._ltz(-(self - other)))

    def __le__(self: SharedTensor, other: Any) -> SharedTensor:
        return self._from_bit(self._one_minus(self._ltz(-(self - other))))

    def __ge__(self: SharedTensor, other: Any) -> SharedTensor:
        return self._from_bit(self._one_minus(self._ltz(self - other)))

    def _both_sides(self: SharedTensor, other: Any) -> tuple[Shares, Shares]:
        """([x < y], [y < x]) from one batched comparison."""
        difference = self - other
        both = self._ltz(tensor.stack([difference, -difference]))
        return map_parts(both, lambda part: part[0]), map_parts(both, lambda part: part[1])

    def eq(self: SharedTensor, other: Any) -> SharedTensor:
        """[x == y] elementwise: 1 - [x < y] - [y < x], both in one batched comparison."""
        below, above = self._both_sides(other)
        return self._from_bit(zip_parts(self._one_minus(below), above, torch.sub))

    def ne(self: SharedTensor, other: Any) -> SharedTensor:
        below, above = self._both_sides(other)
        return self._from_bit(zip_parts(below, above, torch.add))

    __eq__ = eq  # type: ignore[assignment]
    __ne__ = ne  # type: ignore[assignment]
    __hash__ = object.__hash__  # identity, as torch.Tensor

    lt, gt, le, ge = __lt__, __gt__, __le__, __ge__

    def sign(self: SharedTensor) -> SharedTensor:
        """-1, 0 or 1 as torch.sign (``protocols.additive.compare.sign``)."""
        scale = self._session.encoding.scale
        return self._call(protocols.sign)._map(lambda part: part * scale)

    def abs(self: SharedTensor) -> SharedTensor:
        """|x| (``protocols.additive.compare.absolute``).  When a gradient is recorded: x - 2 x [x < 0], keeping
        the comparison bit for the backward (same rounds)."""
        if not autograd.tracking((self,)):
            return self._call(protocols.absolute)
        with autograd.no_grad():
            negative = self._from_bit(self._call_shares(protocols.ltz))  # self < 0, settling self in the call
            result = self - where(negative, self, 0.0) * 2
        return autograd.record(result, (self,), gradients.absolute, negative)

    def __abs__(self: SharedTensor) -> SharedTensor:
        return self.abs()

    def relu(self: SharedTensor) -> SharedTensor:
        """max(x, 0) (``protocols.additive.compare.relu``).  When a gradient is recorded: where([x > 0], x, 0),
        keeping the comparison bit for the backward (same 9 rounds)."""
        if not autograd.tracking((self,)):
            return self._call(protocols.relu)
        with autograd.no_grad():
            positive = self._from_bit(self._call_shares(protocols.gtz))  # self > 0, settling self in the call
            result = where(positive, self, 0.0)
        return autograd.record(result, (self,), gradients.select, positive)

    def where(self: SharedTensor, condition: Any, other: Any) -> SharedTensor:
        """torch.Tensor.where: self where condition, else other."""
        return where(condition, self, other)

    def clamp(self: SharedTensor, min: Any = None, max: Any = None) -> SharedTensor:  # noqa: A002 - torch's names
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
        ordered = not isinstance(min, tensor.SharedTensor) and not isinstance(max, tensor.SharedTensor) and bool(
            (public_tensor(min).to(torch.float64) <= public_tensor(max).to(torch.float64)).all())
        if not ordered:
            return self.clamp(min=min).clamp(max=max)
        relus = tensor.stack([self - min, self - max]).relu()
        return relus[0] - relus[1] + min

    clip = clamp

    def max(self: SharedTensor, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """Maximum over all elements, or along ``dim`` (``protocols.additive.compare.maximum``)."""
        if not autograd.tracking((self,)):
            values, _ = self._tournament(dim)
            return values.unsqueeze(dim) if keepdim and dim is not None else values
        with autograd.no_grad():
            values, onehot = self._tournament(dim)
            result = values.unsqueeze(dim) if keepdim and dim is not None else values
        return autograd.record(result, (self,), gradients.max_along, onehot, dim, keepdim)

    def min(self: SharedTensor, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """Minimum: the maximum of -x, negated."""
        return -((-self).max(dim, keepdim))

    def argmax(self: SharedTensor, dim: int | None = None, keepdim: bool = True) -> SharedTensor:
        """A shared one-hot (0.0 / 1.0) marking the first maximum along ``dim`` (over all elements if None),
        with the input's shape: the position of a maximum is secret, so no integer index is returned."""
        _, onehot = self._tournament(dim)
        return onehot

    def argmin(self: SharedTensor, dim: int | None = None, keepdim: bool = True) -> SharedTensor:
        return (-self).argmax(dim, keepdim)

    def _tournament(self: SharedTensor, dim: int | None) -> tuple[SharedTensor, SharedTensor]:
        source = self.reshape(-1) if dim is None else self
        values, onehot = self._family.call(protocols.maximum, source._parts, dim=0 if dim is None else dim)
        shape = self.shape
        return self._new(values), self._from_bit(map_parts(onehot, lambda part: part.reshape(shape)))

    # -- approximations (documented domain, error and cost in protocols/approx) -----------------------
    def exp(self: SharedTensor, method: str = "piecewise") -> SharedTensor:
        """e^x (``protocols.approx.exp.exp``: domain, error and cost there)."""
        result = self._call(approx_exp.exp, method=method)
        return autograd.record(result, (self,), gradients.exp, result)

    def sigmoid(self: SharedTensor, method: str = "piecewise") -> SharedTensor:
        """1 / (1 + e^-x) (``protocols.approx.sigmoid.sigmoid``: error and cost there)."""
        result = self._call(approx_sigmoid.sigmoid, method=method)
        return autograd.record(result, (self,), gradients.sigmoid, result)

    def tanh(self: SharedTensor, method: str = "piecewise") -> SharedTensor:
        """tanh(x) (``protocols.approx.sigmoid.tanh``: error and cost there)."""
        result = self._call(approx_sigmoid.tanh, method=method)
        return autograd.record(result, (self,), gradients.tanh, result)

    def reciprocal(self: SharedTensor, method: str = "poly4", positive: bool = False) -> SharedTensor:
        """1/x (``protocols.approx.reciprocal.reciprocal``: domain, error and cost there).  ``positive=True``
        skips the sign (half the comparisons) and returns 0 for x < 0."""
        result = self._call(approx_reciprocal.reciprocal, method=method, signed=not positive)
        return autograd.record(result, (self,), gradients.reciprocal, result)

    def sqrt(self: SharedTensor, method: str = "poly4") -> SharedTensor:
        """sqrt(x); 0 for x <= 0 (``protocols.approx.sqrt.sqrt``: domain, error and cost there)."""
        result = self._call(approx_sqrt.sqrt, method=method)
        return autograd.record(result, (self,), gradients.sqrt, self, method)

    def rsqrt(self: SharedTensor, method: str = "poly4") -> SharedTensor:
        """1/sqrt(x); 0 for x <= 0 (``protocols.approx.sqrt.inv_sqrt``: domain, error and cost there)."""
        result = self._call(approx_sqrt.inv_sqrt, method=method)
        return autograd.record(result, (self,), gradients.rsqrt, result)

    inv_sqrt = rsqrt

    def log(self: SharedTensor, method: str = "poly4") -> SharedTensor:
        """ln(x); 0 for x <= 0 (``protocols.approx.log.log``: domain, error and cost there)."""
        result = self._call(approx_log.log, method=method)
        return autograd.record(result, (self,), gradients.log, self)

    def softmax(self: SharedTensor, dim: int) -> SharedTensor:
        """softmax along ``dim`` (``protocols.approx.softmax.softmax``)."""
        result = self._call(approx_softmax.softmax, dim=dim)
        return autograd.record(result, (self,), gradients.softmax, result, dim)

    def log_softmax(self: SharedTensor, dim: int) -> SharedTensor:
        """log_softmax along ``dim`` (``protocols.approx.softmax.log_softmax``)."""
        result = self._call(approx_softmax.log_softmax, dim=dim)
        return autograd.record(result, (self,), gradients.log_softmax, result, dim)

    def __truediv__(self: SharedTensor, other: Any) -> SharedTensor:
        """x / y.  Shared y: x * reciprocal(y) (y's sign handled; see ``reciprocal`` for the error).  Public
        integer y: one exact division (truncation, error below one unit).  Public float y: x * (1/y)."""
        if isinstance(other, tensor.SharedTensor):
            self._same_session(other)
            return self * other.reciprocal()
        public, is_integer = public_operand(other)
        if is_integer and public.dim() == 0 and int(public) > 0 and self._party.truncation == "dealer":
            result = self._new(self._family.truncate(self._parts, int(public)))
            return autograd.record(result, (self,), gradients.divide, int(public))
        if bool((public == 0).any()):
            raise ZeroDivisionError("division of a SharedTensor by a public zero")
        return self * (1.0 / public.to(torch.float64))

    def __rtruediv__(self: SharedTensor, other: Any) -> SharedTensor:
        return self.reciprocal() * other

    div = __truediv__


def where(condition: Any, if_true: Any, if_false: Any) -> SharedTensor:
    """``if_true`` where ``condition`` is 1, else ``if_false`` (shared or public, broadcasting).

    A shared 0/1 condition straight from a comparison costs one product (1 round); any other 0/1 SharedTensor
    costs a product and a truncation (2 rounds), exact either way for 0/1 conditions.  A public bool tensor
    costs nothing (exact integer products), but then ``if_true`` or ``if_false`` must be shared.
    Differentiable in ``if_true`` and ``if_false`` (not in the condition, as torch).
    """
    session = _where_session(condition, if_true, if_false)
    true_part = if_true if isinstance(if_true, tensor.SharedTensor) else session.public(public_tensor(if_true))
    false_part = if_false if isinstance(if_false, tensor.SharedTensor) else session.public(public_tensor(if_false))
    selector = condition if isinstance(condition, tensor.SharedTensor) else condition.to(torch.int64)
    if not autograd.tracking((true_part, false_part)):
        return _select(selector, true_part, false_part)
    with autograd.no_grad():
        result = _select(selector, true_part, false_part)
    return autograd.record(result, (true_part, false_part), gradients.where, selector)


def _where_session(condition: Any, if_true: Any, if_false: Any) -> Session:
    if isinstance(condition, tensor.SharedTensor):
        return condition.session
    if not isinstance(condition, torch.Tensor) or condition.dtype != torch.bool:
        raise TypeError("where() needs a SharedTensor condition or a public bool tensor")
    for operand in (if_true, if_false):
        if isinstance(operand, tensor.SharedTensor):
            return operand.session
    raise TypeError("where() with a public condition needs a SharedTensor operand (else it would not need MPC)")


def _select(condition: SharedTensor | torch.Tensor, true_part: SharedTensor, false_part: SharedTensor
            ) -> SharedTensor:
    """false + condition (true - false): a bit product, a product with truncation, or exact public products."""
    delta = true_part - false_part
    if isinstance(condition, torch.Tensor):
        return false_part + delta * condition
    if condition._bit is not None:
        product = condition.session.family.mul(condition._bit, delta._parts, rescale=False)
        return false_part + condition._new(product)
    return false_part + condition * delta
