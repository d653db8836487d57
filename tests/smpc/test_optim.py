"""smpc.optim.Adam against torch.optim.Adam, and the optimisers' state dicts (SGD and Adam), for 2 and 3 parties
of the dealer family and the replicated family's 3.

Tolerances come from Adam's docstring: inside its gradient window (2^-4 <= 2^scale_bits |g| < 2^7.5) each
step's update errs by at most 1 % of the update plus a few units (u = 2^-16) from the final truncation and the
subtraction; the tests below keep every gradient inside that window and sum the per-step bound over the steps.
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
from tests.support.checks import PARTIES, check_all, run_and_collect
from tests.support.harness import run_parties

UNIT = 2.0**-16
#: Adam's per-step relative error inside its window (class docstring: below 1 %).
STEP_RELATIVE = 0.01
#: Per-step absolute slack: the final truncation and the subtraction (1 unit each), and the L term's 3 units.
STEP_ABSOLUTE = 5 * UNIT


def _share(session: smpc.Session, value: torch.Tensor, owner: int = 0) -> smpc.SharedTensor:
    return session.share(value if session.rank == owner else None, owner=owner)


# -- Adam on a least-squares problem ----------------------------------------------------------------------
@PARTIES
def test_adam_least_squares_matches_torch(n_parties: int) -> None:
    """20 Adam steps (lr 0.05, default betas, weight decay 0.01) on mean squared error of a linear model: the
    gradients 2/N X^T (X w + b - y) are computed on shares from the shared parameters; torch.optim.Adam runs the
    same problem in float64.  Tolerance: 20 steps of 1 % of lr plus a few units each, 0.0105 in all; the
    problem contracts, so the shared trajectory's own errors do not grow through the gradients."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(16, 3, dtype=torch.float64, generator=generator)
    y = x @ torch.tensor([0.25, -0.5, 0.125], dtype=torch.float64) + 0.15  # first gradients below 0.7
    initial_w = torch.zeros(3, dtype=torch.float64)
    initial_b = torch.zeros(1, dtype=torch.float64)
    steps = 20
    options: dict[str, Any] = {"lr": 0.05, "weight_decay": 0.01}
    lr: float = options["lr"]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        w, b = snn.Parameter(_share(session, initial_w)), snn.Parameter(_share(session, initial_b))
        targets = _share(session, y, owner=session.world_size - 1)
        optimizer = soptim.Adam([w, b], **options)
        for _ in range(steps):
            optimizer.zero_grad()
            residual = x @ w.data + b.data - targets
            w.grad = (x.t() @ residual) * (2.0 / len(x))
            b.grad = residual.sum().reshape(1) * (2.0 / len(x))
            optimizer.step()
        return {"w": w.data.reveal(), "b": b.data.reveal()}

    w, b = torch.nn.Parameter(initial_w.clone()), torch.nn.Parameter(initial_b.clone())
    reference = torch.optim.Adam([w, b], **options)
    for _ in range(steps):
        reference.zero_grad()
        torch.nn.functional.mse_loss(x @ w + b, y).backward()
        reference.step()
    tolerance = steps * (STEP_RELATIVE * lr + STEP_ABSOLUTE)
    assert float(w.detach().abs().max()) > 20 * tolerance  # the parameters moved far beyond the tolerance
    check_all(run_and_collect(program, n_parties), {"w": (w.detach(), tolerance), "b": (b.detach(), tolerance)})


# -- Adam against torch for drawn hyper-parameters --------------------------------------------------------
def _window_gradients(shape: tuple[int, ...]) -> st.SearchStrategy[torch.Tensor]:
    """Gradients with 0.05 <= |g| <= 1.2: with weight decay <= 0.1 on parameters |p| <= 0.25, |g + wd p| >=
    0.025, so 2^7 |g| lies in Adam's window (about 3.2 to 154)."""
    size = 1
    for side in shape:
        size *= side
    magnitude = st.floats(0.05, 1.2, allow_nan=False)
    element = st.tuples(magnitude, st.booleans()).map(lambda pair: pair[0] if pair[1] else -pair[0])
    return st.lists(element, min_size=size, max_size=size).map(
        lambda values: torch.tensor(values, dtype=torch.float64).reshape(shape))


@PARTIES
@given(data=st.data())
def test_adam_matches_torch(n_parties: int, data: st.DataObject) -> None:
    """Four Adam steps for drawn lr, betas and weight decay on two parameters, the second left without a
    gradient in the second step (its step count does not advance), against torch.optim.Adam fed the same
    gradients.  Each step's bound: 1 % of torch's update of that step plus 5 units; summed over the steps."""
    lr = data.draw(st.sampled_from([0.1, 0.01, 0.001]), label="lr")
    betas = data.draw(st.sampled_from([(0.9, 0.999), (0.8, 0.99), (0.0, 0.9), (0.5, 0.0)]), label="betas")
    decay = data.draw(st.sampled_from([0.0, 0.01, 0.1]), label="weight_decay")
    shapes = [(3, 2), (2,)]
    initial = [data.draw(st.lists(st.floats(-0.25, 0.25), min_size=6, max_size=6), label="p0"),
               data.draw(st.lists(st.floats(-0.25, 0.25), min_size=2, max_size=2), label="p1")]
    start = [torch.tensor(v, dtype=torch.float64).reshape(s) for v, s in zip(initial, shapes)]
    grads = [[data.draw(_window_gradients(shape), label="grad") for shape in shapes] for _ in range(4)]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        params = [snn.Parameter(_share(session, value)) for value in start]
        optimizer = soptim.Adam(params, lr=lr, betas=betas, weight_decay=decay)
        opened = {}
        for step, step_grads in enumerate(grads):
            optimizer.zero_grad()
            for index, (param, grad) in enumerate(zip(params, step_grads)):
                if not (step == 1 and index == 1):
                    param.grad = _share(session, grad, owner=session.world_size - 1)
            optimizer.step()
            opened.update({f"step{step}.param{i}": p.data.reveal() for i, p in enumerate(params)})
        opened["steps"] = torch.tensor([float(optimizer.state[p]["step"]) for p in params], dtype=torch.float64)
        return opened

    reference = [torch.nn.Parameter(value.clone()) for value in start]
    torch_optimizer = torch.optim.Adam(reference, lr=lr, betas=betas, weight_decay=decay)
    bounds = [torch.zeros(shape, dtype=torch.float64) for shape in shapes]
    expected: dict[str, tuple[torch.Tensor, Any]] = {}
    for step, step_grads in enumerate(grads):
        torch_optimizer.zero_grad()
        before = [param.detach().clone() for param in reference]
        for index, (param, grad) in enumerate(zip(reference, step_grads)):
            if not (step == 1 and index == 1):
                param.grad = grad.clone()
        torch_optimizer.step()
        for index, param in enumerate(reference):
            if not (step == 1 and index == 1):
                update = (param.detach() - before[index]).abs()
                bounds[index] = bounds[index] + STEP_RELATIVE * update + STEP_ABSOLUTE
            expected[f"step{step}.param{index}"] = (param.detach().clone(), bounds[index].clone())
    expected["steps"] = (torch.tensor([4.0, 3.0], dtype=torch.float64), 0.0)
    check_all(run_and_collect(program, n_parties), expected)


@PARTIES
def test_adam_clip_is_torch_on_clamped_gradients(n_parties: int) -> None:
    """Gradients up to about 6 (beyond 2^(7.5 - scale_bits) = 1.41) with weight decay 0.1: with clip (the
    default) the steps are torch.optim.Adam's fed g = clamp(grad + wd p, -G, G) without decay, G =
    ``gradient_limit``; bound as in test_adam_matches_torch, summed over 6 steps."""
    generator = torch.Generator().manual_seed(11)
    start = torch.rand(5, dtype=torch.float64, generator=generator) - 0.5
    grads = [torch.randn(5, dtype=torch.float64, generator=generator) * 2.0 for _ in range(6)]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        param = snn.Parameter(_share(session, start))
        optimizer = soptim.Adam([param], lr=0.02, weight_decay=0.1)
        opened = {}
        for step, grad in enumerate(grads):
            param.grad = _share(session, grad, owner=session.world_size - 1)
            optimizer.step()
            opened[f"step{step}"] = param.data.reveal()
        return opened

    limit = 2.0 ** (15 / 2 - 7) * (1.0 - 2.0**-6)
    reference = torch.nn.Parameter(start.clone())
    torch_optimizer = torch.optim.Adam([reference], lr=0.02)
    bound = torch.zeros(5, dtype=torch.float64)
    expected = {}
    clamped = 0
    for step, grad in enumerate(grads):
        before = reference.detach().clone()
        decayed = grad + 0.1 * before
        clamped += int((decayed.abs() > limit).sum())
        reference.grad = decayed.clamp(-limit, limit)
        torch_optimizer.step()
        bound = bound + STEP_RELATIVE * (reference.detach() - before).abs() + STEP_ABSOLUTE
        expected[f"step{step}"] = (reference.detach().clone(), bound.clone())
    assert clamped >= 5  # the test does reach beyond the range
    check_all(run_and_collect(program, n_parties), expected)


@PARTIES
@pytest.mark.parametrize(("clip", "decay"), [(False, 0.0), (True, 0.0), (True, 0.1)])
def test_adam_rounds(n_parties: int, clip: bool, decay: float) -> None:
    """Rounds per step as Adam's docstring states them: 24 / 33 / 34 in the dealer family, 26 / 31 / 33 in
    the replicated one (without clip; clip; clip with weight decay), for up to 1,024 parameters."""
    expected = {(False, 0.0): (24, 26), (True, 0.0): (33, 31), (True, 0.1): (34, 33)}[(clip, decay)]

    def program(session: smpc.Session) -> list[int]:
        params = [snn.Parameter(_share(session, torch.full(shape, 0.1, dtype=torch.float64)))
                  for shape in ((4, 3), (3,), (1,))]
        optimizer = soptim.Adam(params, lr=0.01, weight_decay=decay, clip=clip)
        counts = []
        for _ in range(2):
            for param in params:
                param.grad = _share(session, torch.full(param.shape, 0.3, dtype=torch.float64))
            before = session.stats.rounds
            optimizer.step()
            counts.append(session.stats.rounds - before)
        return counts

    want = expected[1] if getattr(n_parties, "protocol", "dealer") == "replicated" else expected[0]
    assert run_parties(program, n_parties) == [[want, want]] * int(n_parties)


def test_adam_beyond_its_range_raises_under_check_range() -> None:
    """Without clip, a gradient with 2^scale_bits |g| >= 2^7.5 leaves the fixed-point range in the squared
    moment: with check_range the step raises smpc.RangeError (without it the step would be wrong, as the
    docstring says)."""

    def program(session: smpc.Session) -> str:
        param = snn.Parameter(_share(session, torch.zeros(2, dtype=torch.float64)))
        optimizer = soptim.Adam([param], lr=0.01, clip=False)
        param.grad = _share(session, torch.tensor([0.5, 2.0], dtype=torch.float64))
        try:
            optimizer.step()
        except smpc.RangeError:
            return "RangeError"
        return "stepped"

    assert run_parties(program, 2, check_range=True) == ["RangeError"] * 2


def test_adam_refusals() -> None:
    """Empty lists, non-shared parameters and out-of-range hyper-parameters are refused with ValueError (torch's
    checks, plus scale_bits and clip)."""
    with pytest.raises(ValueError, match="empty"):
        soptim.Adam([])
    with pytest.raises(TypeError, match="Parameter"):
        soptim.Adam([torch.nn.Parameter(torch.zeros(1))])  # type: ignore[list-item]

    def program(session: smpc.Session) -> list[str]:
        param = snn.Parameter(session.public(torch.zeros(2)))
        outcomes = []
        for options in ({"lr": -1.0}, {"eps": -1e-8}, {"weight_decay": -0.1}, {"betas": (1.0, 0.999)},
                        {"betas": (0.9, -0.1)}, {"scale_bits": 24}, {"scale_bits": 1.5}, {"clip": 1}):
            try:
                soptim.Adam([param], **options)
                outcomes.append("accepted")
            except ValueError as error:
                outcomes.append("ValueError" if "\n" not in str(error) else "multi-line")
        return outcomes

    assert run_parties(program, 2) == [["ValueError"] * 8] * 2


# -- state dicts ------------------------------------------------------------------------------------------
def _make(kind: str, params: list[snn.Parameter]) -> Any:
    if kind == "sgd":
        return soptim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    return soptim.Adam(params, lr=0.05, betas=(0.8, 0.99), weight_decay=0.01)


@PARTIES
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_state_dict_round_trip(n_parties: int, kind: str) -> None:
    """Save after 3 steps, load into a fresh optimiser, take 3 more: the same parameters as 6 steps without
    stopping (a twin copy, up to rounding: 1 % of the updates plus units), where restarting without the state
    would differ by far more.  The dict has torch's layout, holds SharedTensors, and saving and loading
    communicate nothing."""
    generator = torch.Generator().manual_seed(5)
    start = [torch.rand(3, 2, dtype=torch.float64, generator=generator) - 0.5,
             torch.rand(2, dtype=torch.float64, generator=generator) - 0.5]
    grads = [[(torch.rand(p.shape, dtype=torch.float64, generator=generator) * 0.5 + 0.1)
              * torch.randint(0, 2, p.shape, generator=generator).mul(2).sub(1) for p in start] for _ in range(6)]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        twins = [[snn.Parameter(_share(session, value)) for value in start] for _ in range(3)]
        straight, stopped, restarted = (_make(kind, params) for params in twins)
        for step in range(6):
            if step == 3:
                before = session.stats.rounds
                saved = stopped.state_dict()
                stopped = _make(kind, twins[1])
                stopped.load_state_dict(saved)
                assert session.stats.rounds == before
                restarted = _make(kind, twins[2])
                _check_layout(saved, kind)
            for optimizer, params in zip((straight, stopped, restarted), twins):
                optimizer.zero_grad()
                for param, grad in zip(params, grads[step]):
                    param.grad = _share(session, grad)
                optimizer.step()
        return {f"{name}{i}": p.data.reveal() for name, params in zip(("straight", "stopped", "restarted"), twins)
                for i, p in enumerate(params)}

    opened = run_and_collect(program, n_parties)
    for index in range(2):
        moved = (opened[f"straight{index}"] - start[index]).abs()
        tolerance = STEP_RELATIVE * moved + 12 * STEP_ABSOLUTE
        assert bool(((opened[f"stopped{index}"] - opened[f"straight{index}"]).abs() <= tolerance).all())
        assert float((opened[f"restarted{index}"] - opened[f"straight{index}"]).abs().max()) > 0.01


def _check_layout(saved: dict[str, Any], kind: str) -> None:
    assert set(saved) == {"state", "param_groups"}
    assert saved["param_groups"][0]["params"] == [0, 1]
    names = {"momentum_buffer"} if kind == "sgd" else {"step", "exp_avg", "exp_avg_sq"}
    for index in (0, 1):
        entry = saved["state"][index]
        assert set(entry) == names
        for name in names - {"step"}:
            assert isinstance(entry[name], smpc.SharedTensor)
    if kind == "adam":
        assert saved["state"][0]["step"] == 3
        assert saved["param_groups"][0]["betas"] == (0.8, 0.99)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_load_state_dict_refusals(kind: str) -> None:
    """A state dict for a different parameter count, a buffer of the wrong shape, a missing buffer, another
    optimiser's hyper-parameters, or (Adam) a bad step count is refused with a one-line ValueError."""

    def program(session: smpc.Session) -> list[str]:
        params = [snn.Parameter(session.public(torch.zeros(3, 2))), snn.Parameter(session.public(torch.zeros(2)))]
        optimizer = _make(kind, params)
        for param in params:
            param.grad = session.public(torch.full(param.shape, 0.5))
        optimizer.step()
        good = optimizer.state_dict()
        other = "adam" if kind == "sgd" else "sgd"
        cases = [_make(kind, params[:1]).state_dict(), _with_entry(good, 1, (_buffer(kind), torch.zeros(3))),
                 _with_entry(good, 0, (_buffer(kind), None)), _make(other, params).state_dict(),
                 {"state": {}, "param_groups": []}, _with_entry(good, 5, None)]
        if kind == "adam":
            cases.append(_with_entry(good, 0, ("step", 0)))
        outcomes = []
        for case in cases:
            fresh = _make(kind, params)
            try:
                fresh.load_state_dict(_shared_case(session, case))
                outcomes.append("accepted")
            except ValueError as error:
                outcomes.append(f"ValueError: {error}" if "\n" not in str(error) else "multi-line")
        fresh = _make(kind, params)
        fresh.load_state_dict(good)
        outcomes.append("good" if fresh.state_dict()["state"].keys() == good["state"].keys() else "lost")
        return outcomes

    outcomes = run_parties(program, 2)[0]
    assert outcomes[-1] == "good"
    expected = ["1 parameters", "shape (3,)", "needs a SharedTensor", "hyper-parameters", "one parameter group",
                "parameter 5"] + (["'step' >= 1"] if kind == "adam" else [])
    assert len(outcomes) == len(expected) + 1
    for outcome, fragment in zip(outcomes, expected):
        assert outcome.startswith("ValueError") and fragment in outcome, (outcome, fragment)


def _buffer(kind: str) -> str:
    return "momentum_buffer" if kind == "sgd" else "exp_avg"


def _with_entry(state_dict: dict[str, Any], index: int, change: tuple[str, Any] | None) -> dict[str, Any]:
    """A copy of ``state_dict`` with state ``index``'s ``change`` = (name, value) applied (value None: removed;
    change None: a copy of entry 0 put at ``index``)."""
    state = {key: dict(entry) for key, entry in state_dict["state"].items()}
    if change is None:
        state[index] = dict(state[0])
    else:
        name, value = change
        if value is None:
            del state[index][name]
        else:
            state[index][name] = value
    return {"state": state, "param_groups": state_dict["param_groups"]}


def _shared_case(session: smpc.Session, case: dict[str, Any]) -> dict[str, Any]:
    """Plain tensors in a case become public SharedTensors (a wrong shape, not a wrong type, is under test)."""
    state = {key: {name: session.public(value) if isinstance(value, torch.Tensor) else value
                   for name, value in entry.items()} for key, entry in case["state"].items()}
    return {"state": state, "param_groups": case["param_groups"]}
