"""Dropout and batch normalisation on shares (``smpc.nn.normalization``) against torch, for both families.

Bounds are propagated, not tuned (``tests.support.nn_bounds.Approx``: e = 2^-17 for an encoded input or
upstream gradient, u = 2^-16 per truncation, products |a| db + |b| da + da db + u), through the very operations
the shared code performs:
  * dropout with a public mask: x (e) times 0/1, then times 1/(1 - p) (exact for an integer factor, else a
    public product); its gradient likewise from g (e);
  * batch_norm in training: mean = sum / m (a public product 1/m, which also bounds the dealer family's exact
    division), c = x - mean, v = mean(c c), r = rsqrt(v + eps) with rsqrt's stated bound 1.2e-4/sqrt + 1.5 u
    (``protocols.approx.sqrt.INV_SQRT_ERROR``) at the lowest input v + eps can have, plus its derivative
    r^3/2 times the input's error, xhat = c r, y = xhat w + b; the running statistics as two public products;
    the closed-form backward step by step (g xhat, r w, the sums, the divisions by m, two products).
The joint masks: the keep rate of 40,000 draws is within 0.02 of 1 - p (Hoeffding: a correct sampler fails
with probability at most 2 exp(-2 n 0.02^2) = 2.5e-14), and fixing one party's key while the others' stay fresh
changes the mask (256 draws of p = 1/2: equal only with probability 2^-256), whereas fixing every contributor's
key reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from smpc import nn as snn
from smpc.nn import normalization as snn_norm
from smpc.nn.normalization import batch_norm, dropout, dropout_mask, effective_eps
from tests.support.checks import FLOAT_SLACK
from tests.support.grad_check import RSQRT_A, RSQRT_R, Case, check_gradients, with_seeds
from tests.support.harness import run_parties
from tests.support.nn_bounds import Approx, E, assert_rounds

FAMILIES = pytest.mark.parametrize("protocol", ["dealer", "replicated"])


def within(name: str, got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor) -> None:
    excess = (got - want).abs() - (bound + FLOAT_SLACK)
    assert not bool((excess > 0).any()), (
        f"{name}: error {float((got - want).abs().max()):.3g}, over its bound by {float(excess.max()):.3g}")


def shared(session: smpc.Session, value: torch.Tensor | None, owner: int = 0) -> smpc.SharedTensor:
    return session.share(value if session.rank == owner else None, owner=owner)


def distinct(data: st.DataObject, shape: tuple[int, ...], label: str) -> torch.Tensor:
    """Distinct multiples of 1/16 in [-4, 4]: every channel's variance is at least (1/32)^2."""
    values = hnp.arrays("int64", shape, elements=st.integers(-64, 64), unique=True)
    return torch.from_numpy(data.draw(values, label=label)).to(torch.float64) / 16


# -- dropout -------------------------------------------------------------------------------------------------
def torch_dropout(x: torch.Tensor, p: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's own dropout of x with a seeded generator, and the mask it used (same seed, same draws)."""
    torch.manual_seed(seed)
    reference = torch.nn.functional.dropout(x, p, training=True)
    torch.manual_seed(seed)
    mask = torch.nn.functional.dropout(torch.ones_like(x), p, training=True) != 0
    return reference, mask


def scaled(a: Approx, p: float) -> Approx:
    """Times 1/(1 - p) as dropout does it: an exact integer product or a public float product."""
    factor = 1.0 / (1.0 - p)
    return a.times_int(int(factor)) if factor.is_integer() else a.times_public(factor)


PROBABILITIES = st.sampled_from([0.5, 0.75, 0.2, 0.3])


@FAMILIES
@given(data=st.data())
def test_dropout_with_a_public_mask_equals_torch(protocol: str, data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=3), label="shape"))
    x = data.draw(hnp.arrays("float64", shape, elements=st.floats(-8, 8)), label="x")
    x = torch.from_numpy(x)
    p = data.draw(PROBABILITIES, label="p")
    reference, mask = torch_dropout(x, p, data.draw(st.integers(0, 2**31), label="torch seed"))

    def program(session: smpc.Session) -> torch.Tensor:
        return dropout(shared(session, x), p, True, mask=mask).reveal()

    got = run_parties(program, 3, protocol=protocol)[0]
    within("dropout", got, reference, scaled(Approx(x * mask, E * mask), p).bound)
    bound = lambda xs, g: [scaled(Approx(g * mask, E * mask), p).bound]  # noqa: E731
    case = Case("dropout", [x], lambda t: dropout(t, p, True, mask=mask), bound,
                reference=lambda t: t * mask / (1 - p))
    check_gradients(with_seeds(data, [case]), protocol)


def test_dropout_edges_and_errors() -> None:
    x = torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.float64)

    def program(session: smpc.Session) -> list[Any]:
        value = shared(session, x)
        results: list[Any] = [dropout(value, 0.5, False) is value, dropout(value, 0.0) is value,
                              dropout(value, 1.0).reveal()]
        for call in (lambda: dropout(value, 1.5), lambda: dropout(value, -0.1),
                     lambda: dropout(value, 0.5, mask=torch.ones(3)),
                     lambda: dropout(value, 0.5, mask=torch.full((2, 2), 2.0)),
                     lambda: dropout_mask(session, (2,), 0.0), lambda: dropout_mask(session, (2,), 1.0)):
            with pytest.raises(ValueError):
                call()
            results.append("raised")
        return results

    got = run_parties(program, 3)[0]
    assert got[:2] == [True, True]
    assert torch.equal(got[2], torch.zeros(2, 2, dtype=torch.float64))
    assert got[3:] == ["raised"] * 6


@FAMILIES
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_joint_mask_keeps_one_minus_p(protocol: str, p: float) -> None:
    """40,000 secret draws: all 0 or 1, keep rate within 0.02 of 1 - p (false failure <= 2.5e-14); rounds: one
    comparison for p = 1/2, two otherwise (+1 back to replicated shares), counted on 1,000 draws (larger
    openings switch to reduce-scatter / all-gather: two rounds each; the replicated family's comparisons of up
    to 1,024 elements take 3 rounds, not 8)."""
    count = 40_000

    def program(session: smpc.Session) -> tuple[torch.Tensor, int]:
        mask = dropout_mask(session, (count,), p)
        before = session.stats.rounds
        dropout_mask(session, (1000,), p)
        rounds = session.stats.rounds - before
        return mask.reveal(), rounds

    mask, rounds = run_parties(program, 3, protocol=protocol)[0]
    assert bool(((mask == 0) | (mask == 1)).all())
    assert abs(float(mask.mean()) - (1 - p)) <= 0.02
    comparison = 3 if protocol == "replicated" else 8
    assert_rounds(rounds, (1 if p == 0.5 else 2) * comparison + (protocol == "replicated"))


@FAMILIES
def test_no_single_party_determines_the_mask(protocol: str) -> None:
    """Party 1 (a contributor in both families) keeps one key: the masks of two runs still differ.  With every
    party's key fixed the two runs agree, so equality is what the test would see if one key decided."""
    fixed = {rank: bytes([rank + 1]) * 16 for rank in range(3)}

    def masks(fix: set[int]) -> torch.Tensor:
        def program(session: smpc.Session) -> torch.Tensor:
            key = fixed[session.rank] if session.rank in fix else None
            return dropout_mask(session, (256,), 0.5, key=key).reveal()

        return run_parties(program, 3, protocol=protocol)[0]

    assert not torch.equal(masks({1}), masks({1}))
    assert torch.equal(masks({0, 1, 2}), masks({0, 1, 2}))


@FAMILIES
def test_dropout_with_a_secret_mask(protocol: str) -> None:
    """Each output is 0 or 2 x (p = 1/2, exact), about half of each; backward sends g only where x was kept."""
    x = (torch.arange(1, 201, dtype=torch.float64) / 8).reshape(10, 20)

    def program(session: smpc.Session) -> tuple[torch.Tensor, torch.Tensor]:
        value = shared(session, x).requires_grad_()
        out = dropout(value, 0.5)
        out.backward(torch.ones(10, 20, dtype=torch.float64))
        assert value.grad is not None
        return out.reveal(), value.grad.reveal()

    out, grad = run_parties(program, 3, protocol=protocol)[0]
    kept = out != 0
    assert torch.equal(out, torch.where(kept, 2 * x, 0.0))
    assert torch.equal(grad, torch.where(kept, 2.0, 0.0))
    assert 40 <= int(kept.sum()) <= 160  # Binomial(200, 1/2) outside: probability below 1e-17


@FAMILIES
def test_rounds_of_dropout(protocol: str) -> None:
    """Forward / backward rounds: a secret mask costs the mask's comparisons, one bit product and, for a
    non-integer 1/(1 - p), a truncation; a public mask only that truncation."""
    x = torch.linspace(-3, 3, 40, dtype=torch.float64).reshape(5, 8)
    public = torch.arange(40).reshape(5, 8) % 3 == 0
    expected = {"dealer": [(9, 1), (18, 2), (0, 0), (1, 1)], "replicated": [(5, 1), (10, 3), (0, 0), (2, 2)]}

    def program(session: smpc.Session) -> list[tuple[int, int]]:
        counts = []
        for p, mask in ((0.5, None), (0.3, None), (0.5, public), (0.3, public)):
            value = shared(session, x).requires_grad_()
            before = session.stats.rounds
            out = dropout(value, p, mask=mask).settle()
            middle = session.stats.rounds
            out.backward(torch.ones(5, 8))
            value.grad.settle()
            counts.append((middle - before, session.stats.rounds - middle))
        return counts

    assert run_parties(program, 3, protocol=protocol)[0] == expected[protocol]


# -- batch normalisation -------------------------------------------------------------------------------------
def total(a: Approx, dims: tuple[int, ...]) -> Approx:
    return Approx(a.value.sum(dims, keepdim=True), a.bound.sum(dims, keepdim=True))


def rsqrt_approx(a: Approx) -> Approx:
    """rsqrt's stated bound at the lowest value its input can have, plus its derivative over the input's error."""
    low = a.value - a.bound
    assert bool((low > 0).all()), "the input of rsqrt may be 0: no bound"
    bound = RSQRT_R * low.rsqrt() + RSQRT_A + 0.5 * a.bound * low.pow(-1.5)
    return Approx(a.value.rsqrt(), bound)


def channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.reshape((1, -1) + (1,) * (dim - 2))


def train_bounds(x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, g: torch.Tensor, eps: float,
                 ) -> dict[str, Approx]:
    """Every quantity of batch_norm in training (forward and closed-form backward), with its bound."""
    dims = (0, *range(2, x.dim()))
    m = x.numel() // x.shape[1]
    xs = Approx(x, E)
    mean = total(xs, dims).times_public(1 / m)
    c = xs - mean
    variance = total(c * c, dims).times_public(1 / m)
    r = rsqrt_approx(variance + Approx(torch.tensor(eps), E))
    xhat = c * r
    weight = None if w is None else Approx(channel(w, x.dim()), E)
    y = xhat if weight is None else xhat * weight
    if b is not None:
        y = y + Approx(channel(b, x.dim()), E)
    up = Approx(g, E)
    grad_w, grad_b = total(up * xhat, dims), total(up, dims)
    scale = r if weight is None else r * weight
    inner = up - grad_b.times_public(1 / m) - xhat * grad_w.times_public(1 / m)
    return {"y": y, "mean": mean, "variance": variance, "dx": inner * scale, "dw": grad_w, "db": grad_b}


def running_bounds(old_mean: Approx, old_var: Approx, stats: dict[str, Approx], momentum: float, m: int
                   ) -> tuple[Approx, Approx]:
    """The running update: four public products, their sums."""
    mean = old_mean.times_public(1 - momentum) + flat(stats["mean"].times_public(momentum))
    var = old_var.times_public(1 - momentum) + flat(stats["variance"].times_public(momentum * m / (m - 1)))
    return mean, var


def flat(a: Approx) -> Approx:
    return Approx(a.value.reshape(-1), a.bound.reshape(-1))


@st.composite
def norm_shapes(draw: st.DrawFn) -> tuple[int, ...]:
    if draw(st.booleans()):
        return (draw(st.integers(2, 6)), draw(st.integers(1, 3)))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 3)))


@FAMILIES
@given(data=st.data())
def test_batch_norm_training_against_torch(protocol: str, data: st.DataObject) -> None:
    """Output, new running statistics and the gradients of x, weight and bias, against torch with the same eps."""
    shape = data.draw(norm_shapes(), label="shape")
    channels = shape[1]
    x = distinct(data, shape, "x")
    affine = data.draw(st.booleans(), label="affine")
    w = distinct(data, (channels,), "weight") if affine else None
    b = distinct(data, (channels,), "bias") if affine else None
    running_mean = distinct(data, (channels,), "running mean")
    running_var = distinct(data, (channels,), "running var").abs() + 0.5
    momentum = data.draw(st.sampled_from([0.1, 0.5, 0.03]), label="momentum")
    eps = data.draw(st.sampled_from([1e-5, 1e-3]), label="eps")
    g = data.draw(hnp.arrays("float64", shape, elements=st.floats(-2, 2)), label="g")
    g = torch.from_numpy(g)

    def program(session: smpc.Session) -> list[torch.Tensor]:
        xs = shared(session, x, 0).requires_grad_()
        params = [shared(session, t, 1).requires_grad_() if t is not None else None for t in (w, b)]
        stats = [shared(session, t, 2) for t in (running_mean, running_var)]
        y, new_mean, new_var = batch_norm(xs, *stats, *params, True, momentum, eps)
        y.backward(g)
        assert new_mean is not None and new_var is not None and xs.grad is not None
        opened = [y, new_mean, new_var, xs.grad] + [t.grad for t in params if t is not None]  # type: ignore[misc]
        return [t.reveal() for t in opened]

    got = run_parties(program, 3, protocol=protocol)[0]
    used = effective_eps_for(eps)
    leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
    ref_mean, ref_var = running_mean.clone(), running_var.clone()
    y = torch.nn.functional.batch_norm(leaves[0], ref_mean, ref_var, *(leaves[1:] if affine else (None, None)),
                                       True, momentum, used)
    y.backward(g)
    bounds = train_bounds(x, w, b, g, used)
    new_mean, new_var = running_bounds(Approx(running_mean, E), Approx(running_var, E), bounds, momentum,
                                       x.numel() // channels)
    within("y", got[0], y.detach(), bounds["y"].bound)
    within("running mean", got[1], ref_mean, new_mean.bound)
    within("running var", got[2], ref_var, new_var.bound)
    within("dx", got[3], leaves[0].grad, bounds["dx"].bound)
    if affine:
        within("dweight", got[4], leaves[1].grad, bounds["dw"].bound.reshape(-1))
        within("dbias", got[5], leaves[2].grad, bounds["db"].bound.reshape(-1))


def effective_eps_for(eps: float) -> float:
    return max(eps, 2.0**-16)


def test_effective_eps_is_at_least_the_resolution() -> None:
    def program(session: smpc.Session) -> list[float]:
        return [effective_eps(session, 1e-5), effective_eps(session, 1e-3), effective_eps(session, 0.0)]

    assert run_parties(program, 2)[0] == [2.0**-16, 1e-3, 2.0**-16]


@FAMILIES
def test_rounds_of_batch_norm(protocol: str) -> None:
    """Training forward 28 (dealer) / 29 (replicated: its waiting truncations settle together) rounds, backward
    7 / 8; evaluation forward 23 / 24."""
    x = torch.linspace(-2, 2, 24, dtype=torch.float64).reshape(4, 3, 2)
    expected = {"dealer": [28, 7, 23], "replicated": [29, 8, 24]}[protocol]

    def program(session: smpc.Session) -> list[int]:
        xs = shared(session, x).requires_grad_()
        w, b = session.public(torch.ones(3)).requires_grad_(), session.public(torch.zeros(3)).requires_grad_()
        stats = [session.public(torch.zeros(3)), session.public(torch.ones(3))]
        counts = []
        for step in ("forward", "backward", "eval"):
            before = session.stats.rounds
            if step == "forward":
                y, *_ = batch_norm(xs, *stats, w, b, True)
                y.settle()
            elif step == "backward":
                y.backward(torch.ones(4, 3, 2))
                for leaf in (xs, w, b):
                    leaf.grad.settle()
            else:
                batch_norm(xs, *stats, w, b, False)[0].settle()
            counts.append(session.stats.rounds - before)
        return counts

    counts = run_parties(program, 3, protocol=protocol)[0]
    for count, want in zip(counts, expected):
        assert_rounds(count, want)


def test_batch_norm_errors() -> None:
    def program(session: smpc.Session) -> int:
        checks: list[Callable[[], Any]] = [
            lambda: batch_norm(session.public(torch.ones(1, 3)), None, None, None, None, True),
            lambda: batch_norm(session.public(torch.ones(3)), None, None, None, None, True),
            lambda: batch_norm(session.public(torch.ones(4, 3)), None, None, None, None, False),
            lambda: batch_norm(session.public(torch.ones(4, 3)), None, None, None, None, True, eps=-1.0),
            lambda: batch_norm(session.public(torch.ones(4, 3)), session.public(torch.zeros(3)),
                               session.public(torch.ones(3)), None, None, True, momentum=1.5),
        ]
        raised = 0
        for check in checks:
            try:
                check()
            except ValueError:
                raised += 1
        return raised

    assert run_parties(program, 2)[0] == 5



# -- modules -------------------------------------------------------------------------------------------------
def eval_bounds(x: torch.Tensor, mean: Approx, var: Approx, w: torch.Tensor, b: torch.Tensor, eps: float
                ) -> Approx:
    """batch_norm in evaluation: (x - rm) * (rsqrt(rv + eps) w) + b."""
    dim = x.dim()
    scale = rsqrt_approx(Approx(channel(var.value, dim), channel(var.bound, dim)) + Approx(torch.tensor(eps), E))
    scale = scale * Approx(channel(w, dim), E)
    centered = Approx(x, E) - Approx(channel(mean.value, dim), channel(mean.bound, dim))
    return centered * scale + Approx(channel(b, dim), E)


@FAMILIES
def test_batch_norm_module_tracks_torch_and_evaluates_with_running_stats(protocol: str) -> None:
    """BatchNorm2d from the owner's torch module: two training batches (outputs and running statistics as
    torch's), then evaluation with the running statistics; reveal gives torch's module with the same state."""
    torch.manual_seed(3)
    plain = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    with torch.no_grad():
        plain.weight.copy_(torch.tensor([0.5, -1.25, 2.0]))
        plain.bias.copy_(torch.tensor([0.25, 0.0, -1.0]))
        plain.running_mean.copy_(torch.tensor([0.5, -0.5, 1.0]))
        plain.running_var.copy_(torch.tensor([2.0, 0.75, 1.5]))
    batches = [torch.randn(2, 3, 2, 3, dtype=torch.float64) * 1.5 for _ in range(3)]
    start = {name: getattr(plain, name).detach().clone() for name in ("weight", "bias", "running_mean", "running_var")}

    def program(session: smpc.Session) -> tuple[list[torch.Tensor], torch.nn.Module | None, list[str]]:
        model = snn_norm.BatchNorm2d.from_torch(plain, session, owner=0)
        outputs = [model(shared(session, batch, 1)).reveal() for batch in batches[:2]]
        model.eval()
        outputs.append(model(shared(session, batches[2], 1)).reveal())
        return outputs, model.reveal(to=0), sorted(model.state_dict())

    outputs, revealed, names = run_parties(program, 3, protocol=protocol)[0]
    used = effective_eps_for(plain.eps)
    plain.eps = used
    rm, rv = Approx(start["running_mean"], E), Approx(start["running_var"], E)
    for batch, got in zip(batches[:2], outputs[:2]):
        bounds = train_bounds(batch, start["weight"], start["bias"], torch.zeros_like(batch), used)
        within("train output", got, plain(batch).detach(), bounds["y"].bound)
        rm, rv = running_bounds(rm, rv, bounds, 0.2, batch.numel() // 3)
    plain.eval()
    within("eval output", outputs[2], plain(batches[2]).detach(),
           eval_bounds(batches[2], rm, rv, start["weight"], start["bias"], used).bound)
    assert names == ["bias", "running_mean", "running_var", "weight"]
    assert isinstance(revealed, torch.nn.BatchNorm2d) and not revealed.training
    assert int(revealed.num_batches_tracked) == 2
    within("revealed running mean", revealed.running_mean.double(), plain.running_mean, rm.bound + 1e-7)
    within("revealed running var", revealed.running_var.double(), plain.running_var, rv.bound + 1e-7)


def test_batch_norm_modules_shapes_momentum_none_and_gradients() -> None:
    """BatchNorm1d on (N, C) and (N, C, L), momentum=None (cumulative average), a wrong channel count refused;
    in a Sequential with Linear and Dropout, backward reaches every parameter; Dropout.from_torch, reveal."""
    x = torch.tensor([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.0], [2.0, 1.0]], dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, Any]:
        norm = snn_norm.BatchNorm1d(session, 2, momentum=None)
        first, second = x[:2], x[2:]
        norm(shared(session, first))
        norm(shared(session, second.unsqueeze(-1).expand(2, 2, 3).contiguous()))
        out: dict[str, Any] = {"mean": norm.running_mean.reveal(), "tracked": norm.num_batches_tracked}
        with pytest.raises(ValueError, match="2 channels"):
            norm(shared(session, torch.ones(4, 3)))
        model = snn.Sequential(snn.Linear(session, 2, 3, seed=session.rank), snn_norm.BatchNorm1d(session, 3),
                               snn_norm.Dropout.from_torch(torch.nn.Dropout(0.25)))
        model(shared(session, x)).sum().backward()
        out["grads"] = [name for name, p in model.named_parameters() if p.grad is not None]
        out["buffers"] = [name for name, _ in model.named_buffers()]
        model.eval()
        out["plain"] = model.reveal()
        return out

    got = run_parties(program, 3)[0]
    eps = effective_eps_for(1e-5)
    second = x[2:].unsqueeze(-1).expand(2, 2, 3)
    mean, var = Approx(torch.zeros(2), E), Approx(torch.ones(2), E)
    for batch, momentum in ((x[:2], 1.0), (second, 0.5)):  # cumulative average: factors 1, then 1/2
        stats = train_bounds(batch, None, None, torch.zeros_like(batch), eps)
        mean, var = running_bounds(mean, var, stats, momentum, batch.numel() // 2)
    assert got["tracked"] == 2
    within("cumulative running mean", got["mean"], (x[:2].mean(0) + x[2:].mean(0)) / 2, mean.bound)
    assert got["grads"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert got["buffers"] == ["1.running_mean", "1.running_var"]
    plain = got["plain"]
    assert isinstance(plain[1], torch.nn.BatchNorm1d) and isinstance(plain[2], torch.nn.Dropout)
    assert plain[2].p == 0.25


def test_converters_plug_into_from_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the converters registered as convert.py registers its layers, from_torch converts a Sequential with
    BatchNorm1d and Dropout from the owner's weights; reveal gives the same torch layers and state (each value
    within one encoding, 2^-17)."""
    from smpc.nn import convert

    monkeypatch.setitem(convert._LAYERS, torch.nn.BatchNorm1d, snn_norm.convert_batch_norm)
    monkeypatch.setitem(convert._LAYERS, torch.nn.Dropout, snn_norm.convert_dropout)
    torch.manual_seed(5)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Dropout(0.5))
    plain(torch.randn(6, 4))  # moves the running statistics off 0 and 1
    x = torch.randn(5, 4, dtype=torch.float64)

    def program(session: smpc.Session) -> torch.nn.Module | None:
        model = snn.from_torch(plain, session, owner=0)
        model(shared(session, x)).sum().backward()
        model.zero_grad()
        return model.reveal(to=0, dtype=torch.float64)

    revealed = run_parties(program, 3)[0]
    assert [type(layer) for layer in revealed] == [type(layer) for layer in plain]
    state, reference = revealed.state_dict(), plain.state_dict()
    assert set(state) == set(reference)
    for name, value in reference.items():
        if name.endswith("running_mean") or name.endswith("running_var"):
            continue  # one training forward has moved them on the shares, as it would in torch
        if name.endswith("num_batches_tracked"):
            assert int(state[name]) == int(value) + 1
        else:
            within(name, state[name].double(), value.double(), torch.full_like(value.double(), E))
