"""SharedTensor comparisons and what builds on them, against float64 torch, for 2 and 3 parties.

All of these are exact on encoded values, so inputs are drawn on the fixed-point grid (multiples of 2^-16 with
|v| <= 2^15 - 2^-16): the encoding loses nothing and every expected value is computed exactly in float64.
Arrays come either from a small set of values (many ties, zeros, +-1 ulp) or from the whole grid.
Results are compared with zero tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from smpc.tensor import where as shared_where
from tests.support.checks import DEALER_PARTIES, PARTIES, check_all, run_and_collect
from tests.support.harness import run_parties, share_from
from tests.support.strategies import BROADCAST_PAIRS

ULP = 2.0**-16
#: Largest representable magnitude with the default encoding (int_bits=15, frac_bits=16).
LARGEST = 2.0**15 - ULP
GRID_STEPS = (1 << 31) - 1
#: Values where comparisons tie often, with zero and its neighbours.
TIES = (-3.0, -1.0, -ULP, 0.0, ULP, 0.5, 1.0, 3.0)
#: Boundary values: 0, +-1 ulp, +-1, the largest magnitudes and their neighbours.
BOUNDARY = (0.0, ULP, -ULP, 2 * ULP, 1.0, -1.0, LARGEST, -LARGEST, LARGEST - ULP, -LARGEST + ULP, 2.0**14, -(2.0**14))
#: where() without the comparison fast path multiplies the condition by (a - b) with rescaling, so a and b
#: stay where that product fits the fixed-point bound (|a - b| < 2^15).
WHERE_RANGE = 2.0**14 - 1


# -- strategies ------------------------------------------------------------------------------------------
def grid_values(limit: float = LARGEST) -> st.SearchStrategy[float]:
    """Exactly representable values k 2^-16 with |value| <= limit."""
    steps = min(GRID_STEPS, int(limit / ULP))
    return st.integers(-steps, steps).map(lambda k: k * ULP)


def value_arrays(data: st.DataObject, shape: tuple[int, ...], label: str, limit: float = LARGEST) -> torch.Tensor:
    """A float64 tensor of grid values: tie-heavy (from TIES), continuous (whole grid) or a mix."""
    kind = data.draw(st.sampled_from(["ties", "continuous", "mixed"]), label=f"{label} kind")
    ties = st.sampled_from([v for v in TIES if abs(v) <= limit])
    elements = {"ties": ties, "continuous": grid_values(limit), "mixed": st.one_of(ties, grid_values(limit))}[kind]
    return torch.from_numpy(data.draw(hnp.arrays(np.float64, shape, elements=elements), label=label))


def exact(expected: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, float]]:
    return {name: (value.to(torch.float64), 0.0) for name, value in expected.items()}


def flags(condition: torch.Tensor) -> torch.Tensor:
    return condition.to(torch.float64)


def onehot_of(index: torch.Tensor, like: torch.Tensor, dim: int | None) -> torch.Tensor:
    """float64 one-hot with ``like``'s shape marking ``index`` (torch.argmax/argmin output) along ``dim``."""
    if dim is None:
        return torch.zeros(like.numel(), dtype=torch.float64).scatter_(0, index.reshape(1), 1.0).reshape(like.shape)
    return torch.zeros_like(like).scatter_(dim, index.unsqueeze(dim), 1.0)


# -- comparisons -----------------------------------------------------------------------------------------
COMPARISONS = ("lt", "gt", "le", "ge", "eq", "ne")
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": lambda a, b: a < b, "gt": lambda a, b: a > b, "le": lambda a, b: a <= b,
    "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
}
#: Ways to write "compare a with b" where a or b is shared: the operator, torch.<name>, and (when a is
#: shared) the method.
SPELLINGS: dict[str, Callable[[str, Any, Any], Any]] = {
    "operator": lambda name, a, b: OPERATORS[name](a, b),
    "torch": lambda name, a, b: getattr(torch, name)(a, b),
    "method": lambda name, a, b: getattr(a, name)(b),
}


def compare_public(name: str, a: Any, b: Any) -> torch.Tensor:
    """float64 torch's 0/1 for ``a <name> b``, Python numbers taken as float64 scalars."""
    def as_tensor(value: Any) -> torch.Tensor:
        return value.to(torch.float64) if isinstance(value, torch.Tensor) else torch.tensor(float(value),
                                                                                              dtype=torch.float64)
    return flags(getattr(torch, name)(as_tensor(a), as_tensor(b)))


@PARTIES
def test_every_spelling_of_every_comparison(n_parties: int) -> None:
    """All six comparisons, written as operators, methods and torch functions, shared with shared, and with
    a Python float, a Python int, a public float64 tensor or a public int64 tensor on either side (reflected
    operators, torch.lt(public, shared)) and a numpy array on the right (operator, method), broadcasting, on
    tie-heavy values."""
    x = torch.tensor([[-1.0, 0.0, ULP], [3.0, -ULP, 1.0]], dtype=torch.float64)
    y = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    publics: dict[str, Any] = {"float": 0.0, "int": 1, "tensor": y, "int tensor": torch.tensor([[-1], [3]]),
                               "numpy": np.array([ULP, 0.0, 3.0])}

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sy = share_from(session, [x, y])
        ops = {}
        for name in COMPARISONS:
            for spelling, compare in SPELLINGS.items():
                ops[f"{spelling} {name}(x, y)"] = compare(name, sx, sy)
                ops[f"{spelling} {name}(y, x)"] = compare(name, sy, sx)
                for public_name, public in publics.items():
                    if spelling != "torch" or public_name != "numpy":
                        ops[f"{spelling} {name}(x, {public_name})"] = compare(name, sx, public)
                    if spelling != "method" and isinstance(public, (int, float, torch.Tensor)) and (
                            spelling == "operator" or isinstance(public, torch.Tensor)):
                        ops[f"{spelling} {name}({public_name}, x)"] = compare(name, public, sx)
        return {name: value.reveal() for name, value in ops.items()}

    got = run_and_collect(program, n_parties)
    expected = {}
    for key in got:
        spelling, call = key.split(" ", 1)
        name, operands = call.split("(", 1)
        first, second = operands.rstrip(")").split(", ")
        values = {"x": x, "y": y, **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                     for k, v in publics.items()}}
        expected[key] = compare_public(name, values[first], values[second])
    # Every comparison in every spelling with every operand kind is there: 6 x (3 x 2 shared, 5 + 5 + 4 public
    # on the right, 4 + 2 public on the left).
    assert len(expected) == 6 * (3 * 2 + 5 + 5 + 4 + 4 + 2)
    check_all(got, exact(expected))


@PARTIES
@given(data=st.data())
def test_comparisons_of_shared_values(n_parties: int, data: st.DataObject) -> None:
    """< > <= >= == != of two shared operands of broadcastable shapes (owned by different parties), in a drawn
    spelling (operator, method or torch function), give shared 0.0/1.0 exactly as float64 torch."""
    shapes = data.draw(BROADCAST_PAIRS, label="shapes")
    x = value_arrays(data, shapes.input_shapes[0], "x")
    y = value_arrays(data, shapes.input_shapes[1], "y")
    spelling = data.draw(st.sampled_from(sorted(SPELLINGS)), label="spelling")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sy = share_from(session, [x, y])
        return {name: SPELLINGS[spelling](name, sx, sy).reveal() for name in COMPARISONS}

    check_all(run_and_collect(program, n_parties),
              exact({name: compare_public(name, x, y) for name in COMPARISONS}))


@PARTIES
@given(data=st.data())
def test_comparisons_with_public_values(n_parties: int, data: st.DataObject) -> None:
    """Each comparison with a drawn public operand (Python float, Python int, public float64 or int64 tensor of
    a broadcastable shape), with the shared value on the left and on the right (reflected operator, or
    torch.<name>(public, shared) for tensors)."""
    shapes = data.draw(BROADCAST_PAIRS, label="shapes")
    x = value_arrays(data, shapes.input_shapes[0], "x")
    kind = data.draw(st.sampled_from(["float", "int", "tensor", "int tensor"]), label="public kind")
    public: Any
    if kind == "tensor":
        public = value_arrays(data, shapes.input_shapes[1], "public")
    else:
        public = data.draw({
            "float": st.one_of(st.sampled_from(TIES), grid_values()),
            "int": st.integers(-32767, 32767),
            "int tensor": hnp.arrays(np.int64, shapes.input_shapes[1], elements=st.integers(-3, 3)).map(
                torch.from_numpy),
        }[kind], label="public")
    reflected = SPELLINGS["torch" if kind.endswith("tensor") and data.draw(st.booleans(), label="torch")
                          else "operator"]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        ops = {}
        for name in COMPARISONS:
            ops[f"{name}(x, public)"] = OPERATORS[name](sx, public)
            ops[f"{name}(public, x)"] = reflected(name, public, sx)
        return {name: value.reveal() for name, value in ops.items()}

    expected = {}
    for name in COMPARISONS:
        expected[f"{name}(x, public)"] = compare_public(name, x, public)
        expected[f"{name}(public, x)"] = compare_public(name, public, x)
    check_all(run_and_collect(program, n_parties), exact(expected))


@PARTIES
@given(data=st.data())
def test_sign_abs_relu(n_parties: int, data: st.DataObject) -> None:
    """sign (torch.sign: 0 at 0), abs and relu through methods, abs(), torch.sign/abs/relu and F.relu."""
    x = value_arrays(data, data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), label="shape"), "x")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        ops = {"sign": sx.sign(), "torch.sign": torch.sign(sx), "abs": sx.abs(), "abs()": abs(sx),
               "torch.abs": torch.abs(sx), "relu": sx.relu(), "torch.relu": torch.relu(sx), "F.relu": F.relu(sx)}
        return {name: value.reveal() for name, value in ops.items()}

    sign, absolute, relu = torch.sign(x), torch.abs(x), torch.relu(x)
    check_all(run_and_collect(program, n_parties), exact({
        "sign": sign, "torch.sign": sign, "abs": absolute, "abs()": absolute, "torch.abs": absolute,
        "relu": relu, "torch.relu": relu, "F.relu": relu,
    }))


# -- where -----------------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_where(n_parties: int, data: st.DataObject) -> None:
    """where(cond, a, b) with cond straight from a comparison (fast path) and cond * 1.0 (a plain 0/1
    SharedTensor), a and b shared, a public tensor or a Python number (broadcasting), through smpc's where,
    torch.where and SharedTensor.where: exactly torch.where."""
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=4),
                       label="shapes")
    x = value_arrays(data, shapes.input_shapes[0], "x", WHERE_RANGE)
    a = value_arrays(data, shapes.input_shapes[1], "a", WHERE_RANGE)
    b = value_arrays(data, shapes.input_shapes[2], "b", WHERE_RANGE)
    threshold = data.draw(st.sampled_from([-1.0, 0.0, ULP, 1.0]), label="threshold")
    number = data.draw(st.one_of(st.sampled_from(TIES), grid_values(WHERE_RANGE)), label="number")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sa, sb = share_from(session, [x, a, b])
        fast = sx > threshold
        slow = fast * 1.0
        ops = {}
        for cond_name, cond in {"fast": fast, "slow": slow}.items():
            ops.update({
                f"{cond_name}(sa,sb)": shared_where(cond, sa, sb),
                f"{cond_name}(a,b)": shared_where(cond, a, b),
                f"{cond_name}(sa,b)": torch.where(cond, sa, b),
                f"{cond_name}(a,sb)": torch.where(cond, a, sb),
                f"{cond_name}(number,sb)": torch.where(cond, number, sb),
                f"{cond_name}(sa,number)": shared_where(cond, sa, number),
                f"{cond_name}.method": sa.where(cond, sb),
            })
        return {name: value.reveal() for name, value in ops.items()}

    cond = x > threshold
    number_t = torch.tensor(number, dtype=torch.float64)
    expected = {}
    for cond_name in ("fast", "slow"):
        expected.update({
            f"{cond_name}(sa,sb)": torch.where(cond, a, b), f"{cond_name}(a,b)": torch.where(cond, a, b),
            f"{cond_name}(sa,b)": torch.where(cond, a, b), f"{cond_name}(a,sb)": torch.where(cond, a, b),
            f"{cond_name}(number,sb)": torch.where(cond, number_t, b),
            f"{cond_name}(sa,number)": torch.where(cond, a, number_t),
            f"{cond_name}.method": torch.where(cond, a, b),
        })
    check_all(run_and_collect(program, n_parties), exact(expected))


@PARTIES
def test_where_fast_path_costs_one_round(n_parties: int) -> None:
    """A condition straight from a comparison (or argmax) selects with one product (1 round); the same
    condition times 1.0 has lost its bit and costs a product plus a truncation (2 rounds); both exact.
    ``settle`` finishes the deferred truncations (``smpc.deferred``) of the condition before the count and of
    the result inside it."""
    x = torch.tensor([-2.0, 0.0, 3.5, 1.0], dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        comparison = sx > 0.0
        conditions = {"comparison": lambda: comparison, "argmax": sx.argmax,
                      "comparison*1.0": lambda: comparison * 1.0}
        results = {}
        for name, condition in conditions.items():
            cond = condition().settle()
            before = session.stats.rounds
            chosen = shared_where(cond, sx, -sx).settle()
            results[f"{name} rounds"] = torch.tensor(float(session.stats.rounds - before), dtype=torch.float64)
            results[name] = chosen.reveal()
        return results

    check_all(run_and_collect(program, n_parties), exact({
        "comparison": torch.where(x > 0, x, -x), "comparison rounds": torch.tensor(1.0),
        "argmax": torch.where(x == x.max(), x, -x), "argmax rounds": torch.tensor(1.0),
        "comparison*1.0": torch.where(x > 0, x, -x), "comparison*1.0 rounds": torch.tensor(2.0),
    }))


# -- clamp -----------------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_clamp(n_parties: int, data: st.DataObject) -> None:
    """clamp with min only, max only and both (min <= max), the bounds drawn as Python numbers, public tensors
    (broadcasting along the last dim) or SharedTensors, through a drawn spelling (clamp, clip, torch.clamp,
    torch.clip): exactly torch.clamp."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), label="shape")
    x = value_arrays(data, shape, "x")
    kind = data.draw(st.sampled_from(["number", "tensor", "shared"]), label="bound kind")
    if kind == "number":
        first = data.draw(st.one_of(st.sampled_from(TIES), grid_values()), label="first bound")
        second = data.draw(st.one_of(st.sampled_from(TIES), grid_values()), label="second bound")
        low = torch.tensor(min(first, second), dtype=torch.float64)
        high = torch.tensor(max(first, second), dtype=torch.float64)
    else:
        first, second = value_arrays(data, shape[-1:], "first bound"), value_arrays(data, shape[-1:], "second bound")
        low, high = torch.minimum(first, second), torch.maximum(first, second)
    spelling = data.draw(st.sampled_from(["clamp", "clip", "torch.clamp", "torch.clip"]), label="spelling")

    def clamp(tensor: Any, low_bound: Any = None, high_bound: Any = None) -> Any:
        if spelling.startswith("torch."):
            return getattr(torch, spelling[6:])(tensor, min=low_bound, max=high_bound)
        return getattr(tensor, spelling)(min=low_bound, max=high_bound)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, s_low, s_high = share_from(session, [x, low, high])
        bounds: tuple[Any, Any] = (float(low), float(high)) if kind == "number" else (
            (s_low, s_high) if kind == "shared" else (low, high))
        ops = {"min": clamp(sx, bounds[0]), "max": clamp(sx, None, bounds[1]), "both": clamp(sx, *bounds)}
        return {name: value.reveal() for name, value in ops.items()}

    check_all(run_and_collect(program, n_parties), exact({
        "min": torch.clamp(x, min=low), "max": torch.clamp(x, max=high), "both": torch.clamp(x, low, high),
    }))


@PARTIES
def test_clamp_with_min_above_max_matches_torch(n_parties: int) -> None:
    """torch.clamp sets every element to max when min > max; a SharedTensor must do the same."""
    x = torch.tensor([-3.0, 1.0, 1.5, 2.0, 5.0], dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        return {"clamp(2, 1)": sx.clamp(2.0, 1.0).reveal()}

    check_all(run_and_collect(program, n_parties), exact({"clamp(2, 1)": torch.clamp(x, 2.0, 1.0)}))


def test_clamp_needs_a_bound() -> None:
    """clamp() with neither bound raises ValueError, as torch.clamp does."""
    def program(session: smpc.Session) -> str:
        (sx,) = share_from(session, [torch.zeros(2, dtype=torch.float64)])
        try:
            sx.clamp()
        except ValueError:
            return "ValueError"
        return "no error"

    assert run_parties(program, 2) == ["ValueError", "ValueError"]


# -- max, min, argmax, argmin ----------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_max_min_argmax_argmin(n_parties: int, data: st.DataObject) -> None:
    """max/min over all elements and along every dim (drawn as a positive or negative index), with or
    without keepdim, and argmax/argmin as a shared one-hot of the input's shape marking torch's (first) index
    (keepdim does not change that shape), each through the method or torch.max/min/argmax/argmin (drawn)."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), label="shape")
    x = value_arrays(data, shape, "x")
    ndim = len(shape)
    dims = [data.draw(st.sampled_from([d, d - ndim]), label=f"dim {d}") for d in range(ndim)]
    keepdims = [data.draw(st.booleans(), label=f"keepdim {d}") for d in range(ndim)]
    via_torch = data.draw(st.booleans(), label="torch functions")

    def call(name: str, tensor: Any, *args: Any) -> Any:
        return getattr(torch, name)(tensor, *args) if via_torch else getattr(tensor, name)(*args)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        ops = {f"{name}()": call(name, sx) for name in ("max", "min", "argmax", "argmin")}
        for dim, keepdim in zip(dims, keepdims):
            ops.update({f"{name}({dim})": call(name, sx, dim, keepdim) for name in ("max", "min", "argmax", "argmin")})
        return {name: value.reveal() for name, value in ops.items()}

    expected = {"max()": x.max(), "min()": x.min(), "argmax()": onehot_of(x.argmax(), x, None),
                "argmin()": onehot_of(x.argmin(), x, None)}
    for dim, keepdim in zip(dims, keepdims):
        expected.update({
            f"max({dim})": torch.amax(x, dim, keepdim=keepdim), f"min({dim})": torch.amin(x, dim, keepdim=keepdim),
            f"argmax({dim})": onehot_of(x.argmax(dim), x, dim), f"argmin({dim})": onehot_of(x.argmin(dim), x, dim),
        })
    check_all(run_and_collect(program, n_parties), exact(expected))


# -- boundaries ------------------------------------------------------------------------------------------
@PARTIES
def test_boundary_values(n_parties: int) -> None:
    """Every pair of boundary values (0, +-1 ulp, +-1, +-(2^15 - 2^-16) and neighbours) compared all six
    ways, so differences reach +-(2^16 - 2^-15); sign, abs, relu, clamp, max/argmax and min/argmin of the
    boundary values, and their differences with each other: all exact."""
    values = torch.tensor(BOUNDARY, dtype=torch.float64)
    left = values.repeat_interleave(len(BOUNDARY))
    right = values.repeat(len(BOUNDARY))
    reversed_values = values.flip(0)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sl, sr, sv, srev = share_from(session, [left, right, values, reversed_values])
        differences = sv - srev
        ops = {
            "<": sl < sr, ">": sl > sr, "<=": sl <= sr, ">=": sl >= sr, "==": sl == sr, "!=": sl != sr,
            "x<public": sl < right, "public<x": right < sl, "x==public": sl == right,
            "sign": sv.sign(), "abs": sv.abs(), "relu": sv.relu(), "clamp": sv.clamp(-ULP, LARGEST - ULP),
            "max": sv.max(), "min": sv.min(), "argmax": sv.argmax(), "argmin": sv.argmin(),
            "max(rows)": sv.reshape(-1, 2).max(1), "argmin(rows)": sv.reshape(-1, 2).argmin(1),
            "difference sign": differences.sign(), "difference>0": differences > 0,
        }
        return {name: value.reveal() for name, value in ops.items()}

    differences = values - reversed_values
    rows = values.reshape(-1, 2)
    check_all(run_and_collect(program, n_parties), exact({
        "<": flags(left < right), ">": flags(left > right), "<=": flags(left <= right), ">=": flags(left >= right),
        "==": flags(left == right), "!=": flags(left != right),
        "x<public": flags(left < right), "public<x": flags(right < left), "x==public": flags(left == right),
        "sign": torch.sign(values), "abs": values.abs(), "relu": torch.relu(values),
        "clamp": torch.clamp(values, -ULP, LARGEST - ULP),
        "max": values.max(), "min": values.min(), "argmax": onehot_of(values.argmax(), values, None),
        "argmin": onehot_of(values.argmin(), values, None), "max(rows)": torch.amax(rows, 1),
        "argmin(rows)": onehot_of(rows.argmin(1), rows, 1),
        "difference sign": torch.sign(differences), "difference>0": flags(differences > 0),
    }))


# -- costs -----------------------------------------------------------------------------------------------
@DEALER_PARTIES
@pytest.mark.parametrize("count", [1, 2, 5, 16, 17])
def test_rounds_of_tensor_operations(n_parties: int, count: int) -> None:
    """Rounds per call as documented: every comparison (eq and ne batch both directions) and sign 8, abs,
    relu and two-sided clamp 9, max/min/argmax over m elements 9 ceil(log2 m)."""
    x = torch.linspace(-2.0, 2.0, count, dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, int]:
        sx, sy = share_from(session, [x, x.flip(0)])
        calls: dict[str, Callable[[], Any]] = {
            "<": lambda: sx < sy, ">": lambda: sx > 1.0, "<=": lambda: sx <= sy, ">=": lambda: sx >= x,
            "==": lambda: sx == sy, "!=": lambda: sx != 0.0, "sign": sx.sign, "abs": sx.abs, "relu": sx.relu,
            "clamp": lambda: sx.clamp(-1.0, 1.0), "max": sx.max, "min": lambda: sx.min(0), "argmax": sx.argmax,
        }
        rounds = {}
        for name, call in calls.items():
            before = session.stats.rounds
            call()
            rounds[name] = session.stats.rounds - before
        return rounds

    tournament = 9 * math.ceil(math.log2(count))
    expected = {"<": 8, ">": 8, "<=": 8, ">=": 8, "==": 8, "!=": 8, "sign": 8, "abs": 9, "relu": 9, "clamp": 9,
                "max": tournament, "min": tournament, "argmax": tournament}
    for rank, rounds in enumerate(run_parties(program, n_parties)):
        assert rounds == expected, rank
