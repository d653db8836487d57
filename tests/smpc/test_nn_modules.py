"""smpc.nn's modules on autograd: the conv/pooling/shape/softmax layers and the losses against torch, a user's
own torch.nn.Module traced with torch.fx, refusals by name, state dicts and train/eval.

Tolerances are stated per check: outputs and gradients of these small models within 2e-3 of torch's (a few
truncations of 2^-16 each, plus exp/log/reciprocal approximation errors of at most about 1e-3 after softmax),
exact for structure (names, shapes, modes)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import smpc
from smpc import nn as snn
from tests.support.harness import run_parties
from tests.support.strategies import float_arrays

FAMILIES = pytest.mark.parametrize("protocol", ["dealer", "replicated"])
TOLERANCE = 2e-3


def _cnn() -> torch.nn.Sequential:
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 3), torch.nn.LogSoftmax(dim=1),
    ).double()


class _UserNet(torch.nn.Module):
    """A user's module: layers, a nested Sequential, functional calls, a method, an operator, a free parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 3, 2)
        self.block = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Flatten())
        self.fc = torch.nn.Linear(9, 2)
        self.scale = torch.nn.Parameter(torch.tensor([0.5, -1.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.conv(x))
        h = torch.relu(h) + 0.25
        logits = torch.nn.functional.linear(h.view(h.shape[0], -1), self.fc.weight, self.fc.bias) * self.scale
        return torch.sigmoid(logits)


def _shared_run(session: smpc.Session, model: torch.nn.Module, x: torch.Tensor, loss: Any, target: Any
                ) -> dict[str, Any]:
    shared_model = snn.from_torch(model, session, owner=0)
    shared_x = session.share(x if session.rank == session.world_size - 1 else None, owner=session.world_size - 1)
    output = shared_model(shared_x)
    loss(output, target).backward()
    names = [name for name, _ in shared_model.named_parameters()]
    grads = smpc.cat([p.grad.reshape(-1) for p in shared_model.parameters() if p.grad is not None]).reveal()
    return {"output": output.reveal(), "names": names, "grads": grads, "plain": shared_model.reveal(to=0)}


def _torch_run(model: torch.nn.Module, x: torch.Tensor, loss: Any, target: Any) -> tuple[torch.Tensor, list[str],
                                                                                          torch.Tensor]:
    model.zero_grad()
    output = model(x)
    loss(output, target).backward()
    names = [name for name, _ in model.named_parameters()]
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return output.detach(), names, grads


@FAMILIES
def test_cnn_modules_match_torch(protocol: str) -> None:
    """Conv2d (padding), ReLU, MaxPool2d, AvgPool2d, Flatten, Linear, LogSoftmax converted by from_torch: the
    output and every parameter's NLL gradient within TOLERANCE of torch's; the revealed module has torch's
    state-dict names and the same weights."""
    model = _cnn()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([2, 0])
    output, names, grads = _torch_run(model, x, torch.nn.NLLLoss(), target)
    for seen in run_parties(lambda s: _shared_run(s, model, x, snn.NLLLoss(), target), 3, protocol=protocol):
        assert seen["names"] == names
        assert (seen["output"] - output).abs().max() < TOLERANCE
        assert (seen["grads"] - grads).abs().max() < TOLERANCE
    plain = run_parties(lambda s: _shared_run(s, model, x, snn.NLLLoss(), target), 3)[0]["plain"]
    assert list(plain.state_dict()) == list(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.allclose(plain.state_dict()[name].double(), value, atol=2**-16)


def test_user_module_is_traced() -> None:
    """A user's torch.nn.Module (Conv1d, a nested Sequential, F.linear, .view, torch.relu, a free Parameter,
    torch.sigmoid) runs on shares through its torch.fx graph: output and BCE gradients within TOLERANCE of
    torch's, parameters under torch's names, and reveal gives the user's class back with the trained state."""
    torch.manual_seed(5)
    model = _UserNet().double()
    x = torch.randn(3, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    output, names, grads = _torch_run(model, x, torch.nn.BCELoss(), target)
    for seen in run_parties(lambda s: _shared_run(s, model, x, snn.BCELoss(), target), 3):
        assert seen["names"] == names
        assert (seen["output"] - output).abs().max() < TOLERANCE
        assert (seen["grads"] - grads).abs().max() < TOLERANCE
        if seen["plain"] is not None:
            assert isinstance(seen["plain"], _UserNet)
            assert (seen["plain"].double()(x) - output).abs().max() < TOLERANCE


class _Erf(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


class _Gelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.act = torch.nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


class _Cumsum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.cumsum(0)


class _Branches(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class _TwoInputs(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


@pytest.mark.parametrize(("module", "named"), [
    (_Erf(), "the function torch.erf"),
    (_Gelu(), "the layer torch.nn.GELU (act)"),
    (_Cumsum(), "the method .cumsum()"),
    (_Branches(), "torch.fx cannot trace"),
    (_TwoInputs(), "takes 2 inputs"),
    (torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU()), "cannot convert GELU"),
    (torch.nn.Conv2d(1, 1, 3, groups=1, padding="same"), "padding='same'"),
])
def test_unsupported_operations_are_refused_by_name(module: torch.nn.Module, named: str) -> None:
    """from_torch refuses, before sharing anything, with a TypeError naming what is unsupported."""

    def program(session: smpc.Session) -> str:
        before = session.stats.rounds
        try:
            snn.from_torch(module, session, owner=0)
        except TypeError as error:
            return f"{session.stats.rounds - before} {error}"
        return "no error"

    for message in run_parties(program, 3):
        assert message.startswith("0 ") and named in message, message


def test_free_parameter_needs_an_owner() -> None:
    """A user's module reading a parameter outside the torch.nn layers it calls (here fc.weight through
    F.linear; fc itself is never called) cannot be initialised jointly: refused before anything is shared."""

    def program(session: smpc.Session) -> str:
        try:
            snn.from_torch(_UserNet(), session)
        except TypeError as error:
            return f"{session.stats.rounds} {error}"
        return "no error"

    for message in run_parties(program, 3):
        assert message.startswith("0 ") and "parameter fc.weight" in message and "owner=" in message


# -- losses ------------------------------------------------------------------------------------------------
def _loss_grad(session: smpc.Session, logits: torch.Tensor, criterion: Any, target: Any, shared_target: bool
               ) -> tuple[float, torch.Tensor]:
    z = session.share(logits if session.rank == 0 else None, owner=0).requires_grad_()
    if shared_target:
        target = session.share(target if session.rank == 1 else None, owner=1)
    loss = criterion(z, target)
    value = loss.value()
    loss.backward()
    assert value is not None and z.grad is not None
    return value, z.grad.reveal()


@given(data=st.data())
@settings(deadline=None)
def test_class_losses_match_torch(data: st.DataObject) -> None:
    """CrossEntropyLoss (public indices, shared one-hot), NLLLoss, BCEWithLogitsLoss and MSELoss: values and
    input gradients within TOLERANCE of torch's (logits in [-4, 4])."""
    rows, classes = data.draw(st.integers(1, 4), label="rows"), data.draw(st.integers(2, 4), label="classes")
    logits = data.draw(float_arrays((rows, classes), 4.0), label="logits")
    labels = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows)))
    onehot = torch.nn.functional.one_hot(labels, classes).double()
    binary = (data.draw(float_arrays((rows, classes), 1.0), label="y") > 0).double()
    log_probabilities = logits.log_softmax(1)
    cases = [
        ("cross-entropy, indices", logits, snn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), labels, False),
        ("cross-entropy, shared one-hot", logits, snn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), onehot, True),
        ("nll, indices", log_probabilities, snn.NLLLoss(), torch.nn.NLLLoss(), labels, False),
        ("bce with logits", logits, snn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss(), binary, True),
        ("mse, sum", logits, snn.MSELoss(reduction="sum"), torch.nn.MSELoss(reduction="sum"), binary, False),
    ]
    for name, inputs, ours, theirs, target, shared in cases:
        reference = inputs.clone().requires_grad_()
        expected = theirs(reference, target)
        expected.backward()
        assert reference.grad is not None
        value, grad = run_parties(partial(_loss_grad, logits=inputs, criterion=ours, target=target,
                                          shared_target=shared), 3)[0]
        scale = 1.0 + abs(float(expected.detach()))
        assert abs(value - float(expected.detach())) < TOLERANCE * scale, name
        assert (grad - reference.grad).abs().max() < TOLERANCE, name


def test_class_loss_targets_are_checked() -> None:
    """Wrong target shapes or class indices out of range are one-line ValueErrors."""

    def program(session: smpc.Session) -> list[str]:
        z = session.public(torch.zeros(2, 3, dtype=torch.float64))
        errors = []
        for target in (torch.tensor([0, 3]), torch.tensor([0]), torch.zeros(2, 2, dtype=torch.float64)):
            try:
                snn.CrossEntropyLoss()(z, target)
            except ValueError as error:
                errors.append(str(error))
        return errors

    errors = run_parties(program, 2)[0]
    assert len(errors) == 3 and "[0, 3)" in errors[0] and "(2,)" in errors[1] and "(2, 3)" in errors[2]


# -- state, modes ------------------------------------------------------------------------------------------
def test_state_dict_round_trip_and_modes() -> None:
    """state_dict holds shares under torch's names; load_state_dict into a model with other weights makes it
    reveal the first model's weights; mismatches are refused; train()/eval() reach every child and predict()
    restores the mode."""
    model = _cnn()

    def program(session: smpc.Session) -> dict[str, Any]:
        first = snn.from_torch(model, session, owner=0)
        second = snn.from_torch(model, session)                  # joint weights, unknown to all
        state = first.state_dict()
        second.load_state_dict(state)
        outcome: dict[str, Any] = {"keys": list(state), "same": second.reveal() is not None}
        opened_first, opened_second = first.reveal(), second.reveal()
        assert opened_first is not None and opened_second is not None
        outcome["equal"] = all(torch.equal(opened_first.state_dict()[k], opened_second.state_dict()[k]) for k in state)
        for bad in ({k: v for k, v in state.items() if k != "0.bias"}, {**state, "0.bias": state["5.bias"]}):
            try:
                second.load_state_dict(bad)
            except ValueError as error:
                outcome.setdefault("errors", []).append(str(error))
        second.eval()
        outcome["eval"] = [m.training for m in second.modules()]
        x = session.public(torch.zeros(1, 1, 4, 4, dtype=torch.float64))
        second.train()
        second.predict(x)
        outcome["after predict"] = second.training
        return outcome

    for outcome in run_parties(program, 3):
        assert outcome["keys"] == list(model.state_dict())
        assert outcome["equal"]
        assert len(outcome["errors"]) == 2 and "missing ['0.bias']" in outcome["errors"][0]
        assert "shape (2,)" in outcome["errors"][1]
        assert not any(outcome["eval"]) and outcome["after predict"] is True
