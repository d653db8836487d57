"""Autograd on SharedTensor (``smpc.autograd``) against torch autograd, for both protocol families.

Gradient check: every differentiable operation runs on shared inputs that require grad, ``backward`` is called
with a public upstream gradient g (|g| <= 2), and each input's ``.grad`` (revealed) must equal torch's gradient
of the same function on the same float64 inputs within the op's bound.  Bounds are derived, not tuned
(e = 2^-17: encoding of an input or of g; u = 2^-16: one truncation; ``tests.support.nn_bounds.Approx``
propagates a bound through the products of each backward formula):

  * linear ops (add, sub, neg, sum, reshape, indexing, cat, stack, transpose, permute, expand) and selections
    (relu, abs, max/min, where; inputs drawn away from 0 and from ties, so the shared comparison agrees with
    torch's): the gradient is g times +-1 summed over the positions that used the input, so the bound is that
    sum of e: torch's gradient of the same function with upstream e everywhere, in absolute value (exactly 0
    where the input was not selected);
  * products g * y, g @ y^T (mul, matmul, by shared or public values): |dg| |y| + |g| |dy| + |dg| |dy| + u per
    product, summed as torch's backward sums them;
  * g / n, mean: g times the public 1/n: a product with e on 1/n;
  * exp: g * e^x with e^x's stated relative error 8.4e-4 (on [-3.5, 10.4));
  * sigmoid, tanh: g * s (1 - s), g * (1 - t^2) with the stated absolute errors 3.2e-4 (s) and 6.1e-4 (t);
  * reciprocal, log: r = 1/x with error R/|x| + A (R = 3.5e-4, A = 2 u) plus the encoding's e/x^2;
  * rsqrt, sqrt: r = x^-1/2 with error R/sqrt(x) + A (R = 1.2e-4, A = 1.5 u) plus the encoding's e/(2 x^1.5);
  * softmax: s with (m + 1) 5.6e-4 + 4e-4 (+ 2e for the inputs' encoding); log_softmax: its output with
    1e-4 + m 5.6e-4 (+ 2e), and exp of it (<= 0) with 8.4e-4 + 1.01 times that.
Several operations share one session run (starting parties costs more than the operations).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from smpc import nn as snn
from tests.support.checks import FLOAT_SLACK
from tests.support.grad_check import (
    EXP_ABSOLUTE_NONPOSITIVE,
    EXP_RELATIVE,
    RECIPROCAL_A,
    RECIPROCAL_R,
    SIGMOID_ERROR,
    Case,
    approx_bound,
    bilinear_bound,
    check_gradients,
    divide_bound,
    exp_backward,
    log_backward,
    log_softmax_backward,
    mean_bound,
    public_product_bound,
    reciprocal_backward,
    row_sum,
    rsqrt_backward,
    sigmoid_backward,
    softmax_backward,
    sqrt_backward,
    tanh_backward,
    torch_grads,
    with_seeds,
)
from tests.support.harness import run_parties
from tests.support.nn_bounds import Approx, E, U
from tests.support.strategies import BROADCAST_PAIRS, float_arrays, matmul_shapes

FAMILIES = pytest.mark.parametrize("protocol", ["dealer", "replicated"])


# -- drawing the cases -----------------------------------------------------------------------------------
def spaced(data: st.DataObject, shape: tuple[int, ...], low: int, high: int, step: float, label: str,
           ) -> torch.Tensor:
    """Distinct multiples of ``step`` in [low step, high step]: no ties for max, no values near 0 for relu."""
    values = hnp.arrays("int64", shape, elements=st.integers(low, high).filter(lambda v: v != 0), unique=True)
    return torch.from_numpy(data.draw(values, label=label)).to(torch.float64) * step


def linear_cases(data: st.DataObject) -> list[Case]:
    """add, sub, neg, with public operands, sum, reshape, indexing, cat, stack, transpose, permute, expand."""
    pair = data.draw(BROADCAST_PAIRS, label="broadcast shapes")
    a = data.draw(float_arrays(pair.input_shapes[0], 8.0), label="a")
    b = data.draw(float_arrays(pair.input_shapes[1], 8.0), label="b")
    shape = tuple(data.draw(st.lists(st.integers(2, 4), min_size=3, max_size=3), label="shape"))
    x = data.draw(float_arrays(shape, 8.0), label="x")
    y = data.draw(float_arrays(shape, 8.0), label="y")
    public = data.draw(float_arrays(shape[1:], 8.0), label="public")
    drawn_rows = data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=5), label="rows")
    rows = torch.tensor(drawn_rows + drawn_rows[:1])  # a repeated row: its gradients must add up
    row = data.draw(float_arrays((1, shape[2]), 8.0), label="row")
    cases = [
        Case("add", [a, b], lambda p, q: p + q),
        Case("sub", [a, b], lambda p, q: p - q),
        Case("neg", [x], lambda p: -p),
        Case("add public", [x], lambda p: p + public),
        Case("public - x", [x], lambda p: 2.5 - p),
        Case("sum", [x], lambda p: p.sum()),
        Case("sum dim", [x], lambda p: p.sum(1)),
        Case("sum dims keepdim", [x], lambda p: p.sum((0, 2), keepdim=True)),
        Case("reshape", [x], lambda p: p.reshape(shape[0], -1)),
        Case("view flatten unsqueeze squeeze", [x], lambda p: p.view(-1).unsqueeze(0).flatten(1).squeeze(0)),
        Case("slice", [x], lambda p: p[1:, ..., ::2]),
        Case("integer index", [x], lambda p: p[rows, :, 1]),
        Case("cat", [x, y], lambda p, q: torch.cat([p, q, p], dim=-1)),
        Case("stack", [x, y], lambda p, q: torch.stack([q, p], dim=1)),
        Case("transpose", [x], lambda p: p.transpose(0, 2)),
        Case("T", [x[0]], lambda p: p.T),
        Case("permute", [x], lambda p: p.permute(1, 2, 0)),
        Case("expand", [row], lambda p: p.expand(3, shape[2])),
        Case("reused intermediate", [x], lambda p: (lambda h: torch.cat([h, h[1:]]))(p + 1)),
    ]
    return cases


def product_cases(data: st.DataObject) -> list[Case]:
    """Shared x shared and shared x public products, matrix products, division by a public integer, mean."""
    pair = data.draw(BROADCAST_PAIRS, label="broadcast shapes")
    a = data.draw(float_arrays(pair.input_shapes[0], 8.0), label="a")
    b = data.draw(float_arrays(pair.input_shapes[1], 8.0), label="b")
    (left_shape, right_shape) = data.draw(matmul_shapes(), label="matmul shapes")
    left = data.draw(float_arrays(left_shape, 4.0), label="left")
    right = data.draw(float_arrays(right_shape, 4.0), label="right")
    x = data.draw(float_arrays((3, 4), 8.0), label="x")
    factor = data.draw(float_arrays((4,), 4.0), label="factor")
    matrix = data.draw(float_arrays((4, 2), 4.0), label="matrix")
    p_inner = 1 if right.dim() == 1 else right.shape[-1]
    m_inner = 1 if left.dim() == 1 else left.shape[-2]
    elementwise = bilinear_bound(torch.mul, 1, 1)
    return [
        Case("mul", [a, b], lambda p, q: p * q, elementwise),
        Case("square", [x], lambda p: p * p,
             lambda xs, g: [2 * elementwise([xs[0], xs[0]], g)[0]]),
        Case("matmul", [left, right], lambda p, q: p @ q, bilinear_bound(torch.matmul, p_inner, m_inner)),
        Case("mul public float", [x], lambda p: p * factor, public_product_bound(factor, torch.mul, 1)),
        Case("mul public int", [x], lambda p: p * 3,
             lambda xs, g: [torch.full_like(xs[0], 3 * E)]),
        Case("matmul public right", [x], lambda p: p @ matrix, public_product_bound(matrix, torch.matmul, 2)),
        Case("matmul public left", [x.T.contiguous()], lambda p: matrix.T @ p,
             public_product_bound(matrix.T, torch.matmul, 2, public_left=True)),
        Case("divide by 4", [x], lambda p: p / 4, mean_bound(4)),
        Case("mean", [x], lambda p: p.mean(), mean_bound(12)),
        Case("mean dim", [x], lambda p: p.mean(0), mean_bound(3)),
    ]


def nonlinear_cases(data: st.DataObject) -> list[Case]:
    """The approximations (their derivative from the forward output where possible) and the selections."""
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=2, max_size=2), label="shape"))
    signed = spaced(data, shape, -64, 64, 1 / 16, "signed")         # distinct, |v| in [1/16, 4]
    other = spaced(data, shape, -64, 64, 1 / 16, "other") + 1 / 32  # never equal to signed
    positive = spaced(data, shape, 8, 128, 1 / 16, "positive")      # [0.5, 8]
    wide = data.draw(float_arrays(shape, 6.0), label="wide")
    mask = torch.from_numpy(data.draw(hnp.arrays(bool, shape), label="mask"))
    reciprocal_in = positive * torch.where(signed > 0, 1.0, -1.0)
    cases = [
        Case("exp", [signed * 0.75], lambda p: p.exp(), approx_bound(exp_backward)),
        Case("sigmoid", [wide], lambda p: p.sigmoid(), approx_bound(sigmoid_backward)),
        Case("tanh", [wide * 0.5], lambda p: p.tanh(), approx_bound(tanh_backward)),
        Case("reciprocal", [reciprocal_in], lambda p: p.reciprocal(), approx_bound(reciprocal_backward)),
        Case("rsqrt", [positive], lambda p: p.rsqrt(), approx_bound(rsqrt_backward)),
        Case("sqrt", [positive], lambda p: p.sqrt(), approx_bound(sqrt_backward)),
        Case("log", [positive], lambda p: p.log(), approx_bound(log_backward)),
        Case("softmax", [signed], lambda p: p.softmax(-1), approx_bound(softmax_backward)),
        Case("log_softmax", [signed], lambda p: p.log_softmax(-1), approx_bound(log_softmax_backward)),
        Case("relu", [signed], lambda p: p.relu()),
        Case("abs", [signed], lambda p: p.abs()),
        Case("max dim", [signed], lambda p: p.max(-1),
             reference=lambda p: p.amax(-1)),
        Case("min dim keepdim", [signed], lambda p: p.min(0, keepdim=True),
             reference=lambda p: p.amin(0, keepdim=True)),
        Case("max", [signed], lambda p: p.max()),
        Case("where shared condition", [signed, other], lambda p, q: torch.where(p > q, p, q)),
        Case("where public condition", [signed, other[:1]], lambda p, q: torch.where(mask, p, q)),
        # Composites: their gradients come from the recorded pieces (relu in clamp, mul and reciprocal in /).
        Case("clamp", [signed], lambda p: p.clamp(-1 / 32, 33 / 32)),
        Case("divide shared", [signed, reciprocal_in], lambda p, q: p / q, divide_bound),
    ]
    return cases


@FAMILIES
@given(data=st.data())
def test_gradients_of_linear_operations(protocol: str, data: st.DataObject) -> None:
    check_gradients(with_seeds(data, linear_cases(data)), protocol)


@FAMILIES
@given(data=st.data())
def test_gradients_of_products(protocol: str, data: st.DataObject) -> None:
    check_gradients(with_seeds(data, product_cases(data)), protocol)


@FAMILIES
@given(data=st.data())
def test_gradients_of_nonlinear_operations(protocol: str, data: st.DataObject) -> None:
    check_gradients(with_seeds(data, nonlinear_cases(data)), protocol)


# -- conventions -----------------------------------------------------------------------------------------
def _conventions(session: smpc.Session) -> dict[str, Any]:
    """torch's autograd conventions on SharedTensors; returns what the test checks."""
    x = session.share(torch.tensor([1.0, -2.0, 0.5]) if session.rank == 0 else None, owner=0).requires_grad_()
    plain = session.share(torch.tensor([3.0, 1.0, 2.0]) if session.rank == 1 else None, owner=1)
    seen: dict[str, Any] = {}
    y = x * 2 + plain
    seen["flags"] = (x.is_leaf, x.requires_grad, y.is_leaf, y.requires_grad, y.grad_fn is not None)
    untracked = plain * plain + 1
    seen["untracked"] = (untracked.requires_grad, untracked.grad_fn is None)
    with smpc.no_grad():
        inside = x * 2
        with smpc.enable_grad():
            nested = x * 2
    seen["no_grad"] = (inside.requires_grad, nested.requires_grad, smpc.autograd.is_grad_enabled())
    detached = y.detach()
    seen["detach"] = (detached.requires_grad, detached.grad_fn is None)
    (x * x + x).sum().backward()                            # d/dx = 2x + 1
    first = x.grad
    y.sum().backward(retain_graph=True)                     # accumulates 2
    y.sum().backward()                                      # retained: 2 more, then freed
    seen["errors"] = [_error_of(lambda: y.sum().backward()), _error_of(lambda: y.backward()),
                      _error_of(lambda: plain.sum().backward()), _error_of(lambda: y.requires_grad_(False)),
                      _error_of(lambda: setattr(x, "grad", plain.sum()))]
    assert first is not None and x.grad is not None
    opened = smpc.cat([first, x.grad, detached]).reveal()
    seen["first"], seen["accumulated"], seen["detached"] = opened[:3], opened[3:6], opened[6:]
    x.grad = None
    seen["cleared"] = x.grad is None
    return seen


def _error_of(action: Callable[[], Any]) -> str:
    try:
        action()
    except (RuntimeError, ValueError) as error:
        return type(error).__name__
    return "no error"


@FAMILIES
def test_torch_conventions(protocol: str) -> None:
    """requires_grad_, is_leaf, grad_fn, no_grad/enable_grad, detach, accumulation into .grad across backward
    calls, retain_graph, and torch's refusals (second backward through a freed graph, an implicit gradient for
    a non-scalar, backward without grad, turning requires_grad off on a non-leaf, a .grad of another shape)."""
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    for seen in run_parties(_conventions, 3, protocol=protocol):
        assert seen["flags"] == (True, True, False, True, True)
        assert seen["untracked"] == (False, True)
        assert seen["no_grad"] == (False, True, True)
        assert seen["detach"] == (False, True)
        assert seen["errors"] == ["RuntimeError", "RuntimeError", "RuntimeError", "RuntimeError", "ValueError"]
        # 2x + 1 (one product, one truncation) and then + 2 + 2 (exact public integers).
        assert torch.allclose(seen["first"], 2 * x + 1, atol=2 * E + U)
        assert torch.allclose(seen["accumulated"], 2 * x + 5, atol=2 * E + U)
        assert torch.allclose(seen["detached"], 2 * x + torch.tensor([3.0, 1.0, 2.0]), atol=3 * E)
        assert seen["cleared"]


def test_grad_mode_is_per_thread() -> None:
    """no_grad in one thread (one party of run_local) leaves grad mode on in another."""
    inside, release = threading.Event(), threading.Event()
    observed: list[bool] = []

    def party_in_no_grad() -> None:
        with smpc.no_grad():
            observed.append(smpc.autograd.is_grad_enabled())
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=party_in_no_grad)
    thread.start()
    assert inside.wait(10)
    observed.append(smpc.autograd.is_grad_enabled())
    release.set()
    thread.join(10)
    assert observed == [False, True]


# -- costs -----------------------------------------------------------------------------------------------
def _forward_costs(session: smpc.Session, track: bool) -> tuple[int, int, bool]:
    """Rounds and bytes of a small forward pass with and without inputs that require grad."""
    x = session.share(torch.linspace(-2, 2, 12).reshape(3, 4) if session.rank == 0 else None, owner=0)
    w = session.share(torch.linspace(-1, 1, 8).reshape(4, 2) if session.rank == 1 else None, owner=1)
    if track:
        w.requires_grad_()
    session.stats.reset()
    hidden = (x @ w).relu()
    out = torch.cat([hidden.sigmoid(), hidden.tanh(), (hidden - 1).abs(), hidden.max(1, keepdim=True)], dim=1)
    result = (out.sum(0) / 4).mean()
    return session.stats.rounds, session.stats.bytes_sent, result.grad_fn is None


@FAMILIES
def test_recording_costs_no_communication(protocol: str) -> None:
    """Recording a gradient costs no extra communication: the same forward pass takes as many rounds and no
    more bytes with an input that requires grad (relu, abs and max then keep their comparison bit instead of
    calling the fused protocols), and records nothing when no input requires grad."""
    plain = run_parties(lambda session: _forward_costs(session, False), 3, protocol=protocol)
    tracked = run_parties(lambda session: _forward_costs(session, True), 3, protocol=protocol)
    for untracked_costs, tracked_costs in zip(plain, tracked):
        assert tracked_costs[0] == untracked_costs[0]
        # Replicated: the comparison + bit product sends slightly fewer bytes than the fused relu/absolute.
        assert tracked_costs[1] <= untracked_costs[1]
        assert untracked_costs[2] and not tracked_costs[2]


# -- extension point -------------------------------------------------------------------------------------
def _custom_selection(session: smpc.Session) -> dict[str, Any]:
    """A max-pooling-like op defined outside SharedTensor: forward under no_grad, backward through record."""
    x = session.share(torch.tensor([[1.0, 4.0], [3.0, -2.0]]) if session.rank == 0 else None, owner=0)
    x.requires_grad_()

    def pooled(t: smpc.SharedTensor) -> smpc.SharedTensor:
        with smpc.no_grad():
            onehot = t.argmax(dim=1)
            values = (t * onehot).sum(1)
        return smpc.autograd.record(values, [t], lambda g, needs: (g.unsqueeze(1).where(onehot, 0.0),),
                                    name="Pool")

    out = pooled(x)
    seen: dict[str, Any] = {"node": repr(out.grad_fn)}
    (out * torch.tensor([10.0, 100.0])).sum().backward()
    untracked = pooled(x.detach())
    seen["untracked"] = untracked.grad_fn is None
    seen["same result"] = _error_of(lambda: smpc.autograd.record(x, [x], lambda g, needs: (g,)))
    bad = smpc.autograd.record(x * 1, [x], lambda g, needs: (g, g))
    seen["wrong count"] = _error_of(lambda: bad.sum().backward())
    assert x.grad is not None
    seen["grad"] = x.grad.reveal()
    return seen


def test_record_extension_point() -> None:
    """``smpc.autograd.record``: a custom op's backward runs with shared arithmetic and its gradient reaches
    the leaf; nothing is recorded for an input that needs no gradient; misuse is refused."""
    for seen in run_parties(_custom_selection, 3):
        assert seen["node"] == "<PoolBackward>"
        assert seen["untracked"]
        assert seen["same result"] == "ValueError"
        assert seen["wrong count"] == "RuntimeError"
        assert torch.allclose(seen["grad"], torch.tensor([[0.0, 10.0], [100.0, 0.0]], dtype=torch.float64),
                              atol=U)


# -- the fused BCE + Sigmoid shortcut against the generic graph ------------------------------------------
def _bce_both_ways(session: smpc.Session, model: torch.nn.Sequential, x: torch.Tensor, y: torch.Tensor
                   ) -> list[torch.Tensor]:
    """Weight and bias gradients of BCE(sigmoid(x W^T + b), y): smpc.nn's shortcut (p - y) / N, then the
    generic autograd graph of the same model written with log, products and a mean."""
    owner, data_owner = 0, session.world_size - 1
    shared_x = session.share(x if session.rank == data_owner else None, owner=data_owner)
    shortcut_model = snn.from_torch(model, session, owner=owner)
    snn.BCELoss()(shortcut_model(shared_x), y).backward()
    shortcut = [parameter.grad for parameter in shortcut_model.parameters()]
    linear = model[0]
    w, b = (session.share(p.detach().double() if session.rank == owner else None, owner=owner).requires_grad_()
            for p in (linear.weight, linear.bias))
    p = (shared_x @ w.T + b).sigmoid()
    loss = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    loss.backward()
    grads = [*shortcut, w.grad, b.grad]
    assert all(grad is not None for grad in grads)
    opened = smpc.cat([grad.reshape(-1) for grad in grads if grad is not None]).reveal()
    sizes = [linear.weight.numel(), linear.bias.numel()] * 2
    return list(opened.split(sizes))


def _logit_grad_bounds(x: torch.Tensor, y: torch.Tensor, p: torch.Tensor) -> tuple[Approx, Approx]:
    """d loss / dz per sample with bounds: the shortcut (p - y) / N, and the generic graph's
    -(y/N) (1/p) + ((1-y)/N) (1/(1-p)), times s (1 - s), each 1/q from a reciprocal of the shared q."""
    n = y.numel()
    probability = Approx(p, SIGMOID_ERROR)
    shortcut = (probability - Approx(y, 0.0)).times_public(1.0 / n)
    upstream = Approx(torch.full_like(p, -1.0), 0.0).times_public(1.0 / n)     # d(-mean)/d term

    def reciprocal_near(q: torch.Tensor) -> Approx:
        # 1/q of the shared q (off by SIGMOID_ERROR): the reciprocal's error plus how far 1/q moves.
        return Approx(1 / q, RECIPROCAL_R / q + RECIPROCAL_A + SIGMOID_ERROR / (q * (q - SIGMOID_ERROR)))

    through_p = (upstream * Approx(y, 0.0)) * reciprocal_near(p)
    through_q = (upstream * Approx(1 - y, 0.0)) * reciprocal_near(1 - p)
    gradient_p = through_p - through_q
    generic = gradient_p * (probability * probability.one_minus())
    return shortcut, generic


@FAMILIES
def test_bce_shortcut_matches_generic_autograd(protocol: str) -> None:
    """smpc.nn's fused BCE-after-Sigmoid gradient (no log, no division) equals autograd's gradient of the same
    logistic model written with log (which pays two reciprocals and a sigmoid derivative) within the sum of
    their propagated bounds, for the weights (x^T dz) and the bias (sum dz)."""
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid()).double()
    x = torch.randn(8, 3, dtype=torch.float64) * 0.5
    y = (torch.rand(8, 1, dtype=torch.float64) > 0.5).to(torch.float64)
    with torch.no_grad():
        p = model(x)
    assert bool(((p > 0.05) & (p < 0.95)).all())       # the reciprocals' bounds are stated for this range
    shortcut, generic = _logit_grad_bounds(x, y, p)
    assert torch.allclose(shortcut.value, generic.value, atol=1e-12)
    encoded_x = Approx(x, E)
    bounds = [(shortcut.T @ encoded_x).bound.reshape(-1), shortcut.bound.sum(0),
              (generic.T @ encoded_x).bound.reshape(-1), generic.bound.sum(0)]
    for opened in run_parties(lambda session: _bce_both_ways(session, model, x, y), 3, protocol=protocol):
        weight_shortcut, bias_shortcut, weight_generic, bias_generic = opened
        assert (weight_shortcut - weight_generic).abs().le(bounds[0] + bounds[2] + FLOAT_SLACK).all()
        assert (bias_shortcut - bias_generic).abs().le(bounds[1] + bounds[3] + FLOAT_SLACK).all()
        # Both against torch, so that agreeing with each other is not agreeing on something else.
        reference = torch_grads(lambda w, b: torch.nn.functional.binary_cross_entropy(
            torch.sigmoid(x @ w.T + b), y), [model[0].weight.detach(), model[0].bias.detach()], torch.tensor(1.0))
        assert (weight_generic - reference[0].reshape(-1)).abs().le(bounds[2] + FLOAT_SLACK).all()
        assert (bias_shortcut - reference[1]).abs().le(bounds[1] + FLOAT_SLACK).all()


# -- a small classifier: the ops composed, with nll through indexing -------------------------------------
def _classifier_grads(session: smpc.Session, x: torch.Tensor, weights: list[torch.Tensor], targets: torch.Tensor
                      ) -> list[torch.Tensor]:
    """Gradients of nll(log_softmax(relu(x W1^T + b1) W2^T), targets) for W1, b1, W2 (one reveal)."""
    data_owner = session.world_size - 1
    shared_x = session.share(x if session.rank == data_owner else None, owner=data_owner)
    w1, b1, w2 = (session.share(w if session.rank == 0 else None, owner=0).requires_grad_() for w in weights)
    logits = (shared_x @ w1.T + b1).relu() @ w2.T
    loss = -logits.log_softmax(1)[torch.arange(len(targets)), targets].mean()
    loss.backward()
    grads = [w1.grad, b1.grad, w2.grad]
    assert all(grad is not None for grad in grads)
    opened = smpc.cat([grad.reshape(-1) for grad in grads if grad is not None]).reveal()
    return [part.reshape(w.shape) for part, w in zip(opened.split([w.numel() for w in weights]), weights)]


def _classifier_bounds(x: torch.Tensor, weights: list[torch.Tensor], targets: torch.Tensor) -> list[Approx]:
    """The same backward pass in ``Approx``: log_softmax's output off by its stated error plus twice the
    logits' largest error in the row (its Lipschitz constant), softmax = exp(output) off by exp's error."""
    w1, b1, w2 = (Approx(w, E) for w in weights)
    pre = Approx(x, E) @ w1.T + b1
    hidden = pre.relu()
    logits = hidden @ w2.T
    classes = logits.value.shape[1]
    output_error = 1e-4 + classes * EXP_ABSOLUTE_NONPOSITIVE + 2 * logits.bound.amax(1, keepdim=True)
    probabilities = Approx(logits.value.softmax(1), EXP_RELATIVE + 1.01 * output_error)
    count = len(targets)
    picked = Approx(torch.tensor(-1.0), 0.0).times_public(1.0 / count)    # d loss / d each picked entry
    onehot = torch.nn.functional.one_hot(targets, classes).to(torch.float64)
    upstream = Approx(picked.value * onehot, picked.bound * onehot)
    grad_logits = upstream - probabilities * row_sum(upstream)
    grad_hidden = grad_logits @ w2
    grad_pre = pre.relu_backward(grad_hidden)
    return [grad_pre.T @ Approx(x, E), grad_pre.sum0(), grad_logits.T @ hidden]


@FAMILIES
def test_small_classifier_gradients(protocol: str) -> None:
    """Linear, relu, Linear, log_softmax and nll through integer indexing and mean, composed: every parameter's
    gradient against torch's within the bound propagated through the same backward pass."""
    generator = torch.Generator().manual_seed(16)
    x = torch.rand(6, 4, dtype=torch.float64, generator=generator) * 2 - 1
    weights = [torch.rand(*shape, dtype=torch.float64, generator=generator) - 0.5 for shape in ((5, 4), (5,), (3, 5))]
    targets = torch.tensor([0, 2, 1, 1, 0, 2])

    def plain_loss(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        logits = torch.relu(x @ w1.T + b1) @ w2.T
        return torch.nn.functional.nll_loss(torch.log_softmax(logits, 1), targets)

    reference = torch_grads(plain_loss, weights, torch.tensor(1.0))
    bounds = _classifier_bounds(x, weights, targets)
    for want, approx in zip(reference, bounds):
        assert torch.allclose(approx.value, want, atol=1e-12)   # the propagation models the same computation
    for opened in run_parties(lambda session: _classifier_grads(session, x, weights, targets), 3, protocol=protocol):
        for name, got, want, approx in zip(("W1", "b1", "W2"), opened, reference, bounds):
            error = (got - want).abs()
            assert bool((error <= approx.bound + FLOAT_SLACK).all()), f"{name}: {float(error.max()):.3g}"
