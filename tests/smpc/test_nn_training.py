"""smpc.optim against torch.optim.SGD, joint initialisation of shared layers, and training a shared model like
plain torch (float64), for 2 and 3 parties.

Bounds are derived, not tuned: see ``tests.support.nn_bounds`` (``Approx`` propagates a bound on |shared - value|
through every step of the shared computation).  Layers, losses and their gradients are in test_nn_layers.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from smpc import nn as snn
from smpc import optim as soptim
from tests.support.checks import PARTIES, check_all, run_and_collect
from tests.support.harness import run_parties
from tests.support.nn_bounds import (
    Approx,
    E,
    assert_rounds,
    logistic_data,
    make_torch_model,
    needs_sigmoid,
    share_model_and_data,
    truncation_rounds,
)
from tests.support.strategies import float_arrays


# -- optimizer -------------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_sgd_matches_torch(n_parties: int, data: st.DataObject) -> None:
    """Three SGD steps with momentum and weight decay (either may be 0) on two parameters, one left without a
    gradient in the second step, against torch.optim.SGD; momentum buffers stay shared."""
    lr = data.draw(st.sampled_from([0.5, 0.1, 0.01]), label="lr")
    momentum = data.draw(st.sampled_from([0.0, 0.9]), label="momentum")
    decay = data.draw(st.sampled_from([0.0, 0.01, 0.1]), label="weight_decay")
    shapes = [(3, 2), (3,)]
    initial = [data.draw(float_arrays(shape, 4.0), label="param") for shape in shapes]
    grads = [[data.draw(float_arrays(shape, 4.0), label="grad") for shape in shapes] for _ in range(3)]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        params = [snn.Parameter(session.share(v if session.rank == 0 else None, owner=0)) for v in initial]
        optimizer = soptim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay)
        opened = {}
        for step, step_grads in enumerate(grads):
            optimizer.zero_grad()
            for index, (param, grad) in enumerate(zip(params, step_grads)):
                if not (step == 1 and index == 1):
                    param.grad = session.share(grad if session.rank == n_parties - 1 else None, owner=n_parties - 1)
            before = session.stats.rounds
            optimizer.step()
            assert_rounds(session.stats.rounds - before, truncation_rounds(session))
            opened.update({f"step{step}.param{i}": p.data.reveal() for i, p in enumerate(params)})
        return opened

    reference = [torch.nn.Parameter(v.clone()) for v in initial]
    torch_optimizer = torch.optim.SGD(reference, lr=lr, momentum=momentum, weight_decay=decay)
    approx = [Approx.encoded(v) for v in initial]
    buffers: list[Approx | None] = [None, None]
    expected = {}
    for step, step_grads in enumerate(grads):
        torch_optimizer.zero_grad()
        for index, (param, grad) in enumerate(zip(reference, step_grads)):
            if step == 1 and index == 1:
                continue
            param.grad = grad.clone()
            # The shared step: param' = param - (lr wd) param - (lr m) buf - lr grad;
            # buf' = m buf + wd param + grad.  Each public product is one term.
            g, p, buf = Approx.encoded(grad), approx[index], buffers[index]
            terms = [p.times_public(lr * decay), g.times_public(lr)]
            if momentum and buf is not None:
                terms.append(buf.times_public(lr * momentum))
            new_p = p
            for term in terms:
                new_p = new_p - term
            if momentum:
                new_buf = g + p.times_public(decay)
                if buf is not None:
                    new_buf = new_buf + buf.times_public(momentum)
                buffers[index] = new_buf
            approx[index] = new_p
        torch_optimizer.step()
        for index, param in enumerate(reference):
            assert torch.allclose(approx[index].value, param.detach(), atol=1e-12)
            expected[f"step{step}.param{index}"] = (param.detach().clone(), approx[index].bound)
    check_all(run_and_collect(program, n_parties), expected)


def test_sgd_refusals() -> None:
    """Empty parameter lists, negative hyper-parameters and non-shared parameters are refused, as torch does."""
    with pytest.raises(ValueError, match="empty"):
        soptim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        soptim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # type: ignore[list-item]

    def program(session: smpc.Session) -> list[str]:
        param = snn.Parameter(session.public(torch.zeros(2)))
        outcomes = []
        for options in ({"lr": -1.0}, {"lr": 0.1, "momentum": -0.5}, {"lr": 0.1, "weight_decay": -1.0}):
            try:
                soptim.SGD([param], **options)
                outcomes.append("accepted")
            except ValueError:
                outcomes.append("ValueError")
        return outcomes

    assert run_parties(program, 2) == [["ValueError"] * 3] * 2


# -- joint initialisation --------------------------------------------------------------------------------
@PARTIES
def test_joint_init_is_nobodys_contribution(n_parties: int) -> None:
    """Linear(init="joint"): the weights are the sum of the parties' contributions (recomputed here from their
    seeds), have torch's default spread (uniform(-B, B) variance B^2/3, B = 1/sqrt(d_in), mean 0, |w| <= B
    sqrt(n)), are reproducible from the seeds, and differ from every single party's contribution by about
    sqrt((n-1)/n) of their own size.  from_torch(owner=None) initialises the same way."""
    d_in, d_out = 60, 16

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        layer = snn.Linear(session, d_in, d_out, seed=100 + session.rank)
        converted = snn.from_torch(torch.nn.Sequential(torch.nn.Linear(d_in, d_out), torch.nn.Sigmoid()), session,
                                   seed=200 + session.rank)
        unseeded = snn.Linear(session, d_in, d_out)
        return {"weight": layer.weight.data.reveal(), "bias": layer.bias.data.reveal(),
                "converted": converted[0].weight.data.reveal(), "unseeded": unseeded.weight.data.reveal()}

    first = run_and_collect(program, n_parties)
    again = run_and_collect(program, n_parties)
    assert torch.equal(first["weight"], again["weight"]) and torch.equal(first["converted"], again["converted"])
    assert not torch.equal(first["unseeded"], again["unseeded"])

    numel = d_in * d_out + d_out
    contributions = [snn.joint_init_contribution(numel, d_in, n_parties, snn.InitDraws(100 + r))
                     for r in range(n_parties)]
    combined = torch.cat([first["weight"].reshape(-1), first["bias"]])
    assert first["weight"].shape == (d_out, d_in) and first["bias"].shape == (d_out,)
    check_all({"sum": combined}, {"sum": (sum(contributions), n_parties * E)})

    bound = 1.0 / math.sqrt(d_in)
    for values in (combined, first["converted"].reshape(-1), first["unseeded"].reshape(-1)):
        # Statistical checks on ~1000 draws: 5 standard errors of the mean, 15% on the standard deviation.
        assert values.abs().max() <= bound * math.sqrt(n_parties) + n_parties * E
        assert abs(float(values.mean())) < 5 * bound / math.sqrt(3 * values.numel())
        assert abs(float(values.std()) / (bound / math.sqrt(3)) - 1) < 0.15
    for contribution in contributions:
        distance = float((combined - contribution).norm() / combined.norm())
        assert distance > 0.5 * math.sqrt((n_parties - 1) / n_parties)


# -- training --------------------------------------------------------------------------------------------
@needs_sigmoid
@PARTIES
def test_logistic_regression_trains_like_torch(n_parties: int) -> None:
    """Linear(d, 1) + Sigmoid, BCELoss, SGD with momentum, 3 epochs of mini-batches: the shared model's
    predictions (revealed to party 0 only) and revealed weights follow plain torch's within the bound
    propagated through every step, and classify held-out rows the same wherever that bound allows."""
    d, batch, epochs, lr, momentum = 4, 16, 3, 0.5, 0.5
    x, y = logistic_data(64, d, seed=3)
    x_test, _ = logistic_data(32, d, seed=4)
    model = make_torch_model("logistic", d, 0, 1, seed=7)

    def program(session: smpc.Session) -> dict[str, Any]:
        shared, sx = share_model_and_data(session, model, x)
        sy = session.share(y if session.rank == 0 else None, owner=0)
        sx_test = session.share(x_test if session.rank == 1 else None, owner=1)
        optimizer = soptim.SGD(shared.parameters(), lr=lr, momentum=momentum)
        criterion = snn.BCELoss()
        for _ in range(epochs):
            for start in range(0, len(x), batch):
                loss = criterion(shared(sx[start : start + batch]), sy[start : start + batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return {"predictions": shared.predict(sx_test, to=0), "model": shared.reveal(to=0, dtype=torch.float64)}

    results = run_parties(program, n_parties)
    assert all(r["predictions"] is None and r["model"] is None for r in results[1:])

    # Plain torch, same batches, plus the propagated bound of the shared computation.
    reference = make_torch_model("logistic", d, 0, 1, seed=7)
    torch_optimizer = torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum)
    weight, bias = Approx.encoded(reference[0].weight), Approx.encoded(reference[0].bias)
    buffers: dict[str, Approx] = {}
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            torch_optimizer.zero_grad()
            torch.nn.functional.binary_cross_entropy(reference(xb), yb).backward()
            torch_optimizer.step()
            p = ((Approx.encoded(xb) @ weight.T) + bias).sigmoid()
            g = (p - Approx.encoded(yb)).divide(len(xb))
            new = {}
            for name, param, grad in (("weight", weight, g.T @ Approx.encoded(xb)), ("bias", bias, g.sum0())):
                step = param - grad.times_public(lr)
                if name in buffers:
                    step = step - buffers[name].times_public(lr * momentum)
                    buffers[name] = grad + buffers[name].times_public(momentum)
                else:
                    buffers[name] = grad
                new[name] = step
            weight, bias = new["weight"], new["bias"]
    assert torch.allclose(weight.value, reference[0].weight.detach(), atol=1e-9)
    predictions = ((Approx.encoded(x_test) @ weight.T) + bias).sigmoid()
    want = reference(x_test).detach()
    assert torch.allclose(predictions.value, want, atol=1e-9)

    got = results[0]
    check_all({"predictions": got["predictions"]}, {"predictions": (want, predictions.bound)})
    revealed = got["model"][0]
    check_all({"weight": revealed.weight.detach(), "bias": revealed.bias.detach()},
              {"weight": (reference[0].weight.detach(), weight.bound),
               "bias": (reference[0].bias.detach(), bias.bound)})
    decided = (want - 0.5).abs() > predictions.bound
    assert bool(decided.any())
    assert torch.equal((got["predictions"] > 0.5)[decided], (want > 0.5)[decided])


@needs_sigmoid
def test_rounds_of_logistic_regression_on_a_loan_batch() -> None:
    """Linear(60, 1) + Sigmoid on a batch of 128 (the loan job): forward 2 + R_sigmoid (measured on the same
    matmul and sigmoid), BCE backward 3 (exact division, then g^T x; no input gradient), SGD step 1."""
    x = torch.randn(128, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) / 4
    y = (x[:, :1] > 0).to(torch.float64)
    model = make_torch_model("logistic", 60, 0, 1, seed=0)

    def program(session: smpc.Session) -> list[int]:
        shared, sx = share_model_and_data(session, model, x)
        sy = session.share(y if session.rank == 0 else None, owner=0)
        optimizer = soptim.SGD(shared.parameters(), lr=0.1)
        before = session.stats.rounds
        (sx @ shared[0].weight.data.T).sigmoid()
        counts = [session.stats.rounds - before]
        output = shared(sx)
        counts.append(session.stats.rounds - before - counts[0])
        for action in (snn.BCELoss()(output, sy).backward, optimizer.step):
            before = session.stats.rounds
            action()
            counts.append(session.stats.rounds - before)
        return counts

    for n_parties in (2, 3):
        for sigmoid_and_matmul, forward, backward, step in run_parties(program, n_parties):
            assert forward == sigmoid_and_matmul
            assert_rounds(backward, 3)
            assert_rounds(step, 1)
