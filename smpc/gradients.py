"""The backward functions of SharedTensor's differentiable operations (``smpc.autograd``).

Each is ``rule(grad, needs, *saved) -> one gradient (or None) per input``: ``grad`` is d loss / d output, a
SharedTensor; ``needs[i]`` says whether input ``i`` needs a gradient (a product for an input that needs none is
skipped).  Gradients may keep the output's broadcast shape: ``autograd.sum_to`` reduces them.  Every rule uses
shared arithmetic only, and forward results where they are cheaper than recomputing (rounds in
``smpc.autograd``'s table).  They run under ``no_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from smpc.tensor import SharedTensor

Grads = tuple["SharedTensor | None", ...]
Needs = tuple[bool, ...]


# -- linear -------------------------------------------------------------------------------------------------
def add(grad: SharedTensor, needs: Needs) -> Grads:
    return grad, grad


def sub(grad: SharedTensor, needs: Needs) -> Grads:
    return grad, (-grad if needs[1] else None)


def passthrough(grad: SharedTensor, needs: Needs) -> Grads:
    """The gradient unchanged (x + public, expand: broadcasting is undone by ``sum_to``)."""
    return (grad,)


def neg(grad: SharedTensor, needs: Needs) -> Grads:
    return (-grad,)


def mul_public(grad: SharedTensor, needs: Needs, public: Any) -> Grads:
    """x * p: g * p (exact for an integer p, one truncation for a float)."""
    return (grad * public,)


def divide(grad: SharedTensor, needs: Needs, divisor: int) -> Grads:
    """x / n (exact division by a public integer): g / n, one truncation."""
    return (grad / divisor,)


def mul(grad: SharedTensor, needs: Needs, x: SharedTensor, y: SharedTensor) -> Grads:
    """x * y: (g y, g x), one shared product per input that needs it."""
    return (grad * y if needs[0] else None), (grad * x if needs[1] else None)


# -- matrix products ----------------------------------------------------------------------------------------
def _as_matrix_grad(grad: SharedTensor, left_dim: int, right_dim: int) -> SharedTensor:
    """The gradient of x @ y with the dimensions a vector operand dropped put back as size 1."""
    if left_dim == 1 and right_dim == 1:
        return grad.reshape(1, 1)
    if left_dim == 1:
        return grad.unsqueeze(-2)
    return grad.unsqueeze(-1) if right_dim == 1 else grad


def _left_grad(g: SharedTensor, y: Any, y_dim: int) -> SharedTensor:
    """d (x @ y) / dx applied to g (matrix form): g @ y^T."""
    y_matrix = y.unsqueeze(-1) if y_dim == 1 else y
    return g @ y_matrix.transpose(-1, -2)


def _right_grad(g: SharedTensor, x: Any, x_dim: int, y_dim: int) -> SharedTensor:
    """d (x @ y) / dy applied to g (matrix form): x^T @ g, with a vector y's column squeezed."""
    x_matrix = x.unsqueeze(0) if x_dim == 1 else x
    x_transposed = x_matrix.transpose(-1, -2)
    product = g.__rmatmul__(x_transposed) if isinstance(x_transposed, torch.Tensor) else x_transposed @ g
    return product.squeeze(-1) if y_dim == 1 else product


def matmul(grad: SharedTensor, needs: Needs, x: SharedTensor, y: SharedTensor) -> Grads:
    """x @ y (shared): (g y^T, x^T g), one shared matmul per input that needs it."""
    g = _as_matrix_grad(grad, x.dim(), y.dim())
    return ((_left_grad(g, y, y.dim()) if needs[0] else None),
            (_right_grad(g, x, x.dim(), y.dim()) if needs[1] else None))


def matmul_public_right(grad: SharedTensor, needs: Needs, public: torch.Tensor, x_dim: int) -> Grads:
    """x @ p: g p^T (local products, one truncation for a float p)."""
    return (_left_grad(_as_matrix_grad(grad, x_dim, public.dim()), public, public.dim()),)


def matmul_public_left(grad: SharedTensor, needs: Needs, public: torch.Tensor, y_dim: int) -> Grads:
    """p @ y: p^T g (local products, one truncation for a float p)."""
    return (_right_grad(_as_matrix_grad(grad, public.dim(), y_dim), public, public.dim(), y_dim),)


# -- reductions and shapes ----------------------------------------------------------------------------------
def _expand_reduced(grad: SharedTensor, shape: torch.Size, dim: Any, keepdim: bool) -> SharedTensor:
    """A gradient of a reduction over ``dim`` broadcast back to the input's ``shape`` (local)."""
    if dim is None:
        return grad.reshape([1] * len(shape)).expand(*shape)
    if not keepdim:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        for d in sorted(d % len(shape) for d in dims):
            grad = grad.unsqueeze(d)
    return grad.expand(*shape)


def sum(grad: SharedTensor, needs: Needs, shape: torch.Size, dim: Any, keepdim: bool) -> Grads:  # noqa: A001
    return (_expand_reduced(grad, shape, dim, keepdim),)


def mean(grad: SharedTensor, needs: Needs, shape: torch.Size, dim: Any, keepdim: bool, count: int) -> Grads:
    """g / count (one truncation), broadcast back."""
    return (_expand_reduced(grad / count, shape, dim, keepdim),)


def reshape(grad: SharedTensor, needs: Needs, shape: torch.Size) -> Grads:
    """reshape, view, flatten, (un)squeeze: the gradient reshaped back."""
    return (grad.reshape(shape),)


def transpose(grad: SharedTensor, needs: Needs, dim0: int, dim1: int) -> Grads:
    return (grad.transpose(dim0, dim1),)


def permute(grad: SharedTensor, needs: Needs, dims: Sequence[int]) -> Grads:
    inverse = [0] * len(dims)
    for position, d in enumerate(dims):
        inverse[d % len(dims)] = position
    return (grad.permute(*inverse),)


def index(grad: SharedTensor, needs: Needs, shape: torch.Size, key: Any) -> Grads:
    """x[key]: g summed into zeros at the positions ``key`` selects (repeated positions add up)."""
    return (grad.scatter_back(key, shape),)


def cat(grad: SharedTensor, needs: Needs, dim: int, sizes: Sequence[int]) -> Grads:
    d = dim % grad.dim()
    pieces, start = [], 0
    for size in sizes:
        pieces.append(grad[(slice(None),) * d + (slice(start, start + size),)])
        start += size
    return tuple(pieces)


def stack(grad: SharedTensor, needs: Needs, dim: int, count: int) -> Grads:
    d = dim % grad.dim()
    return tuple(grad[(slice(None),) * d + (i,)] for i in range(count))


# -- nonlinear ----------------------------------------------------------------------------------------------
def exp(grad: SharedTensor, needs: Needs, output: SharedTensor) -> Grads:
    """g e^x, e^x from the forward."""
    return (grad * output,)


def sigmoid(grad: SharedTensor, needs: Needs, output: SharedTensor) -> Grads:
    """g s (1 - s), s from the forward."""
    return (grad * (output * (1.0 - output)),)


def tanh(grad: SharedTensor, needs: Needs, output: SharedTensor) -> Grads:
    """g (1 - t^2), t from the forward."""
    return (grad * (1.0 - output * output),)


def reciprocal(grad: SharedTensor, needs: Needs, output: SharedTensor) -> Grads:
    """-g r^2, r from the forward."""
    return (-(grad * (output * output)),)


def rsqrt(grad: SharedTensor, needs: Needs, output: SharedTensor) -> Grads:
    """-0.5 g r^3, r from the forward."""
    return ((grad * (output * output * output)) * -0.5,)


def sqrt(grad: SharedTensor, needs: Needs, x: SharedTensor, method: str) -> Grads:
    """0.5 g / sqrt(x) = 0.5 g rsqrt(x)."""
    return ((grad * x.rsqrt(method)) * 0.5,)


def log(grad: SharedTensor, needs: Needs, x: SharedTensor) -> Grads:
    """g / x (the reciprocal of a positive x)."""
    return (grad * x.reciprocal(positive=True),)


def softmax(grad: SharedTensor, needs: Needs, output: SharedTensor, dim: int) -> Grads:
    """s (g - sum(g s)), s from the forward."""
    weighted = grad * output
    return (output * (grad - weighted.sum(dim, keepdim=True)),)


def log_softmax(grad: SharedTensor, needs: Needs, output: SharedTensor, dim: int) -> Grads:
    """g - softmax(x) sum(g), softmax(x) = exp(output) (output <= 0, where exp's error is absolute)."""
    return (grad - output.exp() * grad.sum(dim, keepdim=True),)


def select(grad: SharedTensor, needs: Needs, mask: SharedTensor) -> Grads:
    """relu, max/min along a dimension: g where the forward's 0/1 mask is 1 (one bit product)."""
    return (grad.where(mask, 0.0),)


def absolute(grad: SharedTensor, needs: Needs, negative: SharedTensor) -> Grads:
    """|x|: -g where the forward's bit [x < 0] is 1, else g."""
    return (grad - grad.where(negative, 0.0) * 2,)


def where(grad: SharedTensor, needs: Needs, condition: Any) -> Grads:
    """where(c, a, b): (g where c, g - that); one bit product for a shared condition, none for a public one."""
    chosen = grad.where(condition, 0.0) if hasattr(condition, "reveal") else grad * condition
    return chosen, (grad - chosen if needs[1] else None)


def max_along(grad: SharedTensor, needs: Needs, onehot: SharedTensor, dim: Any, keepdim: bool) -> Grads:
    """max / min over ``dim``: g broadcast back, kept at the selected position (one bit product)."""
    return (_expand_reduced(grad, onehot.shape, dim, keepdim).where(onehot, 0.0),)
