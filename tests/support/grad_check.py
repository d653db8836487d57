"""The gradient check of smpc.autograd: a ``Case`` (a function, its inputs, the upstream gradient and a bound
per input), the bounds of each backward formula (see tests/smpc/test_autograd.py for their derivation), and
running a batch of cases on shares against torch autograd.

e = 2^-17 (``E``: encoding of an input or of g), u = 2^-16 (``U``: one truncation); ``Approx`` propagates a
bound through the products of each backward formula.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from tests.support.checks import FLOAT_SLACK
from tests.support.harness import run_parties
from tests.support.nn_bounds import Approx, E, U

#: Largest |g| of the upstream gradients drawn.
SEED_LIMIT = 2.0


# -- cases -----------------------------------------------------------------------------------------------
Bound = Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]


@dataclass
class Case:
    """One gradient check: ``forward`` on shared inputs (all require grad), ``reference`` on torch tensors
    (``forward`` itself unless the spellings differ), the upstream gradient ``seed``, and the bound per input
    (by default: torch's gradient for upstream e everywhere, in absolute value)."""

    name: str
    inputs: list[torch.Tensor]
    forward: Callable[..., Any]
    bound: Bound | None = None
    reference: Callable[..., torch.Tensor] | None = None
    seed: torch.Tensor = field(default_factory=lambda: torch.zeros(()))

    @property
    def plain(self) -> Callable[..., torch.Tensor]:
        return self.reference or self.forward

    def bounds(self) -> list[torch.Tensor]:
        if self.bound is not None:
            return self.bound(self.inputs, self.seed)
        grads = torch_grads(self.plain, self.inputs, torch.full_like(self.seed, E))
        return [grad.abs() for grad in grads]


def torch_grads(function: Callable[..., torch.Tensor], inputs: list[torch.Tensor], seed: torch.Tensor
                ) -> list[torch.Tensor]:
    """torch autograd's gradients of ``function`` at ``inputs`` for upstream ``seed`` (zeros where unused)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    grads = torch.autograd.grad(function(*leaves), leaves, seed, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(inputs, grads)]


def bilinear_bound(product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inner_left: int,
                   inner_right: int) -> Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]:
    """x * y or x @ y: each gradient is a product of g with the other operand, one truncation per entry of it
    before the broadcast sum.  ``inner_*``: how many terms each entry of the left (right) gradient's product
    sums over before that truncation (1 for elementwise; p, m for matmul)."""

    def grads(x: torch.Tensor, y: torch.Tensor, seed: torch.Tensor) -> list[torch.Tensor]:
        return torch_grads(product, [x, y], seed)

    def bound(xs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
        x, y = xs
        e_x, e_y, e_g = torch.full_like(x, E), torch.full_like(y, E), torch.full_like(g, E)
        ones = grads(torch.ones_like(x), torch.ones_like(y), torch.ones_like(g))
        left = (grads(x, y.abs(), e_g)[0] + grads(x, e_y, g.abs())[0] + grads(x, e_y, e_g)[0]
                + U * ones[0] / inner_left)
        right = (grads(x.abs(), y, e_g)[1] + grads(e_x, y, g.abs())[1] + grads(e_x, y, e_g)[1]
                 + U * ones[1] / inner_right)
        return [left, right]

    return bound


def public_product_bound(public: torch.Tensor, product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         inner: int, *, public_left: bool = False
                         ) -> Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]:
    """x * p, x @ p or p @ x with a public float p (encoded, so with e as well)."""
    if public_left:
        pair = bilinear_bound(product, inner, inner)
        return lambda xs, g: [pair([public, xs[0]], g)[1]]
    pair = bilinear_bound(product, inner, inner)
    return lambda xs, g: [pair([xs[0], public], g)[0]]


def approx_bound(backward: Callable[[torch.Tensor, Approx], Approx]
                 ) -> Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]:
    """A unary op's bound: ``backward(x, g)`` rebuilds the shared backward formula in ``Approx``."""
    return lambda xs, g: [backward(xs[0], Approx(g, E)).bound]


# -- the backward formulas of the approximations, with their factors' stated errors --------------------------
RECIPROCAL_R, RECIPROCAL_A = 3.5e-4, 2 * U
RSQRT_R, RSQRT_A = 1.2e-4, 1.5 * U
EXP_RELATIVE, EXP_ABSOLUTE_NONPOSITIVE = 8.4e-4, 5.6e-4
SIGMOID_ERROR, TANH_ERROR = 3.2e-4, 6.1e-4


def reciprocal_of(x: torch.Tensor) -> Approx:
    return Approx(1 / x, RECIPROCAL_R / x.abs() + RECIPROCAL_A + 1.01 * E / x**2)


def rsqrt_of(x: torch.Tensor) -> Approx:
    return Approx(x.rsqrt(), RSQRT_R / x.sqrt() + RSQRT_A + 0.51 * E * x**-1.5)


def exp_backward(x: torch.Tensor, g: Approx) -> Approx:
    return g * Approx(x.exp(), (EXP_RELATIVE + 1.01 * E) * x.exp())


def sigmoid_backward(x: torch.Tensor, g: Approx) -> Approx:
    s = Approx(x.sigmoid(), SIGMOID_ERROR)
    return g * (s * s.one_minus())


def tanh_backward(x: torch.Tensor, g: Approx) -> Approx:
    t = Approx(x.tanh(), TANH_ERROR)
    return g * (t * t).one_minus()


def reciprocal_backward(x: torch.Tensor, g: Approx) -> Approx:
    r = reciprocal_of(x)
    return g * (r * r)


def rsqrt_backward(x: torch.Tensor, g: Approx) -> Approx:
    r = rsqrt_of(x)
    return (g * (r * r * r)).times_public(-0.5)


def sqrt_backward(x: torch.Tensor, g: Approx) -> Approx:
    return (g * rsqrt_of(x)).times_public(0.5)


def log_backward(x: torch.Tensor, g: Approx) -> Approx:
    return g * reciprocal_of(x)


def row_sum(a: Approx) -> Approx:
    return Approx(a.value.sum(-1, keepdim=True), a.bound.sum(-1, keepdim=True))


def softmax_backward(x: torch.Tensor, g: Approx) -> Approx:
    m = x.shape[-1]
    s = Approx(x.softmax(-1), (m + 1) * EXP_ABSOLUTE_NONPOSITIVE + 4e-4 + 2 * E)
    return s * (g - row_sum(g * s))


def log_softmax_backward(x: torch.Tensor, g: Approx) -> Approx:
    m = x.shape[-1]
    output_error = 1e-4 + m * EXP_ABSOLUTE_NONPOSITIVE + 2 * E
    p = Approx(x.softmax(-1), EXP_RELATIVE + 1.01 * output_error)
    return g - p * row_sum(g)


def divide_bound(xs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
    """x / y = x * reciprocal(y): (g r, -(g x) r^2) with r off by the reciprocal's error."""
    x, y = xs
    r, upstream = reciprocal_of(y), Approx(g, E)
    return [(upstream * r).bound, ((upstream * Approx(x, E)) * (r * r)).bound]


def mean_bound(count: int) -> Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]:
    """g times the public 1/count (a truncation; the dealer family's exact division is within it)."""
    return lambda xs, g: [(Approx(g, E) * Approx(torch.tensor(1.0 / count), E)).bound.expand_as(xs[0])]


# -- running them ----------------------------------------------------------------------------------------
def upstream(shape: tuple[int, ...]) -> st.SearchStrategy[torch.Tensor]:
    """Upstream gradients with 0.5 <= |g| <= 2: never 0, so that every input's gradient is exercised."""
    magnitudes = hnp.arrays(np.float64, shape, elements=st.floats(0.5, SEED_LIMIT))
    signs = hnp.arrays(np.bool_, shape)
    return st.builds(lambda m, s: torch.from_numpy(np.where(s, -m, m)), magnitudes, signs)


def with_seeds(data: st.DataObject, cases: list[Case]) -> list[Case]:
    for case in cases:
        shape = tuple(case.plain(*case.inputs).shape)
        case.seed = data.draw(upstream(shape), label=f"g of {case.name}")
    return cases


def shared_gradients(session: smpc.Session, cases: list[Case]) -> list[list[torch.Tensor]]:
    """Every case's input gradients, opened in one reveal."""
    grads: list[smpc.SharedTensor] = []
    for case in cases:
        leaves = [session.share(x if session.rank == i % session.world_size else None, owner=i % session.world_size)
                  .requires_grad_() for i, x in enumerate(case.inputs)]
        case.forward(*leaves).backward(case.seed)
        for leaf in leaves:
            assert leaf.grad is not None, f"{case.name}: no gradient"
            grads.append(leaf.grad)
    opened = smpc.cat([grad.reshape(-1) for grad in grads]).reveal()
    result, offset, index = [], 0, 0
    for case in cases:
        per_case = []
        for x in case.inputs:
            per_case.append(opened[offset:offset + x.numel()].reshape(x.shape))
            offset += x.numel()
            index += 1
        result.append(per_case)
    return result


def check_gradients(cases: list[Case], protocol: str) -> None:
    opened = run_parties(lambda session: shared_gradients(session, cases), 3, protocol=protocol)
    assert all(all(torch.equal(a, b) for a, b in zip(sum(o, []), sum(opened[0], []))) for o in opened[1:])
    misses = []
    for case, got in zip(cases, opened[0]):
        want = torch_grads(case.plain, case.inputs, case.seed)
        for index, (value, reference, bound) in enumerate(zip(got, want, case.bounds())):
            error = (value - reference).abs()
            excess = error - (bound + FLOAT_SLACK)
            if bool((excess > 0).any()):
                worst = int(excess.reshape(-1).argmax())
                misses.append(f"{case.name} input {index}: error {float(error.reshape(-1)[worst]):.3g} over its "
                              f"bound {float(bound.reshape(-1)[worst]):.3g}")
    assert not misses, "; ".join(misses)
