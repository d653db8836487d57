"""smpc.nn against torch.nn and torch autograd (float64), for 2 and 3 parties: conversion from and to torch
modules, forward and backward through Linear/ReLU/Sigmoid/Tanh chains, the losses, and their round counts.

Bounds are derived, not tuned: see ``tests.support.nn_bounds`` (``Approx`` propagates a bound on |shared - value|
through the same operations the shared model performs).  The optimizer and training are in test_nn_training.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from smpc import nn as snn
from smpc import optim as soptim
from tests.support.checks import DEALER_PARTIES, FLOAT_SLACK, PARTIES, check_all, run_and_collect
from tests.support.harness import run_parties
from tests.support.nn_bounds import (
    Approx,
    E,
    U,
    approx_backward,
    approx_forward,
    assert_rounds,
    make_torch_model,
    needs_sigmoid,
    needs_tanh,
    share_model_and_data,
    torch_reference,
)
from tests.support.strategies import float_arrays


# -- conversion ------------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_from_torch_reveals_the_same_weights(n_parties: int, data: st.DataObject) -> None:
    """from_torch shares the owner's weights (the others' differ and are ignored); reveal(to=r) gives a torch
    module of the same architecture with weights within e on party r and None elsewhere; reveal() gives it to
    all; state_shares are int64 shares that add up to the encoded weights, named as torch's state_dict, and
    load back."""
    kind = data.draw(st.sampled_from(["logistic", "relu-sigmoid", "tanh-sigmoid", "relu-relu"]), label="kind")
    d_in, hidden, d_out = (data.draw(st.integers(1, 6), label=name) for name in ("d_in", "hidden", "d_out"))
    owner = data.draw(st.integers(0, n_parties - 1), label="owner")
    target = data.draw(st.integers(0, n_parties - 1), label="target")
    model = make_torch_model(kind, d_in, hidden, d_out, seed=data.draw(st.integers(0, 2**16), label="seed"))

    def program(session: smpc.Session) -> dict[str, Any]:
        # Every party passes the same architecture; only the owner's weights are the real ones.
        mine = model if session.rank == owner else make_torch_model(kind, d_in, hidden, d_out, seed=session.rank)
        shared = snn.from_torch(mine, session, owner=owner)
        shares = shared.state_shares()
        restored = snn.from_torch(make_torch_model(kind, d_in, hidden, d_out, seed=99), session, owner=owner)
        restored.load_state_shares(shares)
        return {"to_one": shared.reveal(to=target), "to_all": shared.reveal(dtype=torch.float64),
                "restored": restored.reveal(dtype=torch.float64), "shares": shares}

    results = run_parties(program, n_parties)
    expected = model.state_dict()
    encoded = {name: smpc.FixedPoint().encode(value) for name, value in expected.items()}
    total = {name: torch.zeros_like(value) for name, value in encoded.items()}
    replicated = getattr(n_parties, "protocol", "dealer") == "replicated"
    for rank, result in enumerate(results):
        assert list(result["shares"]) == list(expected)
        for name, share in result["shares"].items():
            assert share.dtype == torch.int64
            total[name] += share[0] if replicated else share  # a replicated party's x_i, of (x_i, x_{i+1})
        if rank != target:
            assert result["to_one"] is None
        for key in ("to_all", "restored") + (("to_one",) if rank == target else ()):
            revealed = result[key]
            assert [type(m) for m in revealed] == [type(m) for m in model]
            dtype = torch.float32 if key == "to_one" else torch.float64
            for name, value in revealed.state_dict().items():
                assert value.dtype == dtype
                # float32 adds its own rounding of the value.
                slack = FLOAT_SLACK + (float(expected[name].abs().max()) * 2.0**-24 if key == "to_one" else 0.0)
                check_all({name: value.double()}, {name: (expected[name], E + slack)})
    for name in encoded:
        assert torch.equal(total[name], encoded[name])


@pytest.mark.parametrize("n_parties", [2])
def test_conversion_refusals(n_parties: int) -> None:
    """Unsupported torch modules (or settings) raise TypeError; an architecture that differs from the owner's raises
    ValueError on the party that notices it (PartyError)."""

    def unsupported(session: smpc.Session) -> str:
        try:
            snn.from_torch(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 1, dilation=2)), session, owner=0)
        except TypeError as error:
            return str(error)
        return "no error"

    for message in run_parties(unsupported, n_parties):
        assert "Conv1d" in message

    def mismatched(session: smpc.Session) -> None:
        width = 3 if session.rank == 0 else 4
        snn.from_torch(torch.nn.Linear(width, 1), session, owner=0)

    with pytest.raises(smpc.PartyError, match="shape"):
        run_parties(mismatched, n_parties)


# -- forward and backward --------------------------------------------------------------------------------
def check_forward_backward(n_parties: int, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                           criterion: str) -> None:
    """Shared output, parameter gradients (by loss.backward()) and, for MSE, the input gradient (the input
    requires a gradient there) against torch autograd, within the propagated bounds."""
    layers = list(model)
    count = y.numel()

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        shared, sx = share_model_and_data(session, model, x)
        sy = session.share(y if session.rank == 0 else None, owner=0)
        if criterion != "bce":
            sx.requires_grad_()
        output = shared(sx)
        opened = {"output": output.reveal()}
        if criterion == "bce":
            snn.BCELoss()(output, sy).backward()
        else:
            snn.MSELoss()(output, sy).backward()
            assert sx.grad is not None
            opened["input"] = sx.grad.reveal()
        opened.update({name: p.grad.reveal() for name, p in shared.named_parameters()})
        return opened

    def loss_of(out: torch.Tensor) -> torch.Tensor:
        if criterion == "bce":
            return torch.nn.functional.binary_cross_entropy(out, y)
        return torch.nn.functional.mse_loss(out, y)
    output, grads, input_grad = torch_reference(model, x, loss_of)

    approx_out, inputs = approx_forward(layers, Approx.encoded(x))
    if criterion == "bce":
        grad = (approx_out - Approx.encoded(y)).divide(count)
    else:
        grad = (approx_out - Approx.encoded(y)).times_int(2).divide(count)
    approx_grads, approx_input = approx_backward(layers, inputs, grad, from_logit=criterion == "bce",
                                                 input_grad=criterion == "mse")
    # The propagation is a model of the same computation: its values are torch's, to float64 rounding.
    assert torch.allclose(approx_out.value, output, atol=1e-12)
    expected = {"output": (output, approx_out.bound)}
    expected.update({name: (grads[name], approx_grads[name].bound) for name in grads})
    if criterion == "mse":
        assert approx_input is not None
        expected["input"] = (input_grad, approx_input.bound)
    for name, (want, _) in expected.items():
        reference = {"output": approx_out, "input": approx_input}.get(name) or approx_grads[name]
        assert torch.allclose(reference.value, want, atol=1e-12), name
    check_all(run_and_collect(program, n_parties), expected)


SIZES = st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(1, 5), st.integers(1, 3))


@PARTIES
@given(data=st.data())
def test_relu_networks_match_autograd(n_parties: int, data: st.DataObject) -> None:
    """Linear/ReLU chains with MSELoss: output, every parameter gradient and the input gradient."""
    batch, d_in, hidden, d_out = data.draw(SIZES, label="sizes")
    kind = data.draw(st.sampled_from(["relu", "relu-relu"]), label="kind")
    model = make_torch_model(kind, d_in, hidden, d_out, seed=data.draw(st.integers(0, 2**16), label="seed"))
    x = data.draw(float_arrays((batch, d_in), 4.0), label="x")
    y = data.draw(float_arrays((batch, d_out), 4.0), label="y")
    check_forward_backward(n_parties, model, x, y, "mse")


@needs_sigmoid
@needs_tanh
@PARTIES
@given(data=st.data())
def test_sigmoid_networks_match_autograd(n_parties: int, data: st.DataObject) -> None:
    """Models ending in Sigmoid: BCELoss through the (p - y) / N shortcut, and MSELoss through the Sigmoid's
    own backward; logistic regression and one-hidden-layer MLPs with ReLU or Tanh."""
    batch, d_in, hidden, d_out = data.draw(SIZES, label="sizes")
    kind = data.draw(st.sampled_from(["logistic", "relu-sigmoid", "tanh-sigmoid"]), label="kind")
    criterion = data.draw(st.sampled_from(["bce", "mse"]), label="criterion")
    model = make_torch_model(kind, d_in, hidden, d_out, seed=data.draw(st.integers(0, 2**16), label="seed"))
    x = data.draw(float_arrays((batch, d_in), 4.0), label="x")
    y = (data.draw(float_arrays((batch, d_out), 1.0), label="y") > 0).to(torch.float64)
    check_forward_backward(n_parties, model, x, y, criterion)


@PARTIES
def test_cached_forward_is_consumed_once(n_parties: int) -> None:
    """Gradients accumulate over backward calls (as torch's) until zero_grad; a second backward of the same
    forward raises RuntimeError (its graph is freed); an older forward's loss still backpropagates through its
    own graph after a newer forward, as in torch."""
    model = make_torch_model("relu", 3, 2, 1, seed=5)
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, Any]:
        shared, sx = share_model_and_data(session, model, x)
        criterion = snn.MSELoss()
        first = criterion(shared(sx), y)
        first.backward()
        once = shared[0].weight.grad.reveal()
        criterion(shared(sx), y).backward()
        twice = shared[0].weight.grad.reveal()
        outcome = {"once": once, "twice": twice}
        try:
            first.backward()
        except RuntimeError:
            outcome["again"] = "RuntimeError"
        shared.zero_grad()
        older = criterion(shared(sx), y)
        shared(sx)
        older.backward()
        outcome["older"] = shared[0].weight.grad.reveal()
        shared.zero_grad()
        outcome["zeroed"] = all(p.grad is None for p in shared.parameters())
        return outcome

    for outcome in run_parties(program, n_parties):
        assert outcome["again"] == "RuntimeError" and outcome["zeroed"]
        assert torch.allclose(outcome["twice"], 2 * outcome["once"], atol=4 * U)
        assert torch.allclose(outcome["older"], outcome["once"], atol=4 * U)


def test_bce_of_other_probabilities_takes_the_generic_path() -> None:
    """BCELoss of probabilities that no Sigmoid made (a leaf here) differentiates its value generically: the
    gradient -(y/p - (1-y)/(1-p)) / N against torch's, within 2e-3 for p in [0.2, 0.8] (two reciprocals, each
    within about 1e-4 relative, times 1/N; a loose stated bound)."""
    p = torch.tensor([[0.2], [0.5], [0.8], [0.35]], dtype=torch.float64)
    y = torch.tensor([[1.0], [0.0], [1.0], [0.0]], dtype=torch.float64)
    reference = p.clone().requires_grad_()
    torch.nn.functional.binary_cross_entropy(reference, y).backward()
    assert reference.grad is not None

    def program(session: smpc.Session) -> torch.Tensor:
        shared = session.share(p if session.rank == 0 else None, owner=0).requires_grad_()
        snn.BCELoss()(shared, y).backward()
        assert shared.grad is not None
        return shared.grad.reveal()

    for grad in run_parties(program, 2):
        assert (grad - reference.grad).abs().max() < 2e-3


@PARTIES
def test_mse_values(n_parties: int) -> None:
    """loss.value(to=r) reveals the loss to party r only; MSE (mean and sum) within its propagated bound."""
    out = torch.tensor([[0.25], [0.9], [0.5], [0.05]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, Any]:
        shared_out = session.share(out if session.rank == 0 else None, owner=0)
        shared_y = session.share(y if session.rank == 1 else None, owner=1)
        return {"mse": snn.MSELoss()(shared_out, shared_y).value(to=n_parties - 1),
                "mse_sum": snn.MSELoss(reduction="sum")(shared_out, y).value()}

    difference = Approx.encoded(out) - Approx.encoded(y)
    squares = difference * difference
    mse_sum = Approx(squares.value.sum(), squares.bound.sum())
    mse = mse_sum.divide(out.numel())
    for rank, values in enumerate(run_parties(program, n_parties)):
        if rank == n_parties - 1:
            assert abs(values["mse"] - float(mse.value)) <= float(mse.bound) + FLOAT_SLACK
        else:
            assert values["mse"] is None
        assert abs(values["mse_sum"] - float(mse_sum.value)) <= float(mse_sum.bound) + FLOAT_SLACK


@PARTIES
def test_bce_value(n_parties: int) -> None:
    """BCELoss.value needs SharedTensor.log and says so with NotImplementedError while there is none; with one,
    it is checked loosely (1e-2: the accuracy of log is its own tests' business), p = 0 included (clamped)."""
    out = torch.tensor([[0.25], [0.9], [0.5], [0.05], [0.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0], [0.0]], dtype=torch.float64)

    def program(session: smpc.Session) -> Any:
        shared_out = session.share(out if session.rank == 0 else None, owner=0)
        try:
            return snn.BCELoss()(shared_out, y).value()
        except NotImplementedError:
            return "NotImplementedError"

    for value in run_parties(program, n_parties):
        if hasattr(smpc.SharedTensor, "log"):
            assert abs(value - torch.nn.functional.binary_cross_entropy(out, y).item()) < 1e-2
        else:
            assert value == "NotImplementedError"


@DEALER_PARTIES
def test_rounds_of_a_relu_network(n_parties: int) -> None:
    """Linear, ReLU, Linear on a batch: forward 2 + 9 + 2 rounds, MSE backward 1 + (2 + 2) + 1 + 2 (the first
    Linear computes no input gradient), SGD step 1; predict (no cache) costs the forward plus one reveal."""
    model = make_torch_model("relu", 6, 5, 1, seed=2)
    x = torch.randn(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def program(session: smpc.Session) -> list[int]:
        shared, sx = share_model_and_data(session, model, x)
        optimizer = soptim.SGD(shared.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        counts = []
        for action in (lambda: shared(sx).settle(), lambda: snn.MSELoss()(shared(sx), torch.zeros(16, 1)).backward(),
                       optimizer.step, lambda: shared.predict(sx, to=0)):
            before = session.stats.rounds
            action()
            counts.append(session.stats.rounds - before)
        return counts

    for counts in run_parties(program, n_parties):
        for count, expected in zip(counts, [13, 13 + 8, 1, 14]):
            assert_rounds(count, expected)
