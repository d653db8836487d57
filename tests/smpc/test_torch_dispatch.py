"""Every torch function that ``SharedTensor.__torch_function__`` accepts, with the public operand first and
second: each either equals plain float64 torch within its stated error bound or raises TypeError naming the
function (``torch.div(public, shared)`` once returned a dot product: the reversed operands fell through to
``__rmatmul__``).  Operator spellings (``public / shared``, ...) are checked the same way."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import smpc
from smpc.torch_dispatch import TORCH_FUNCTIONS as _TORCH_FUNCTIONS
from tests.support.harness import run_parties

#: Public and shared operands: both in [0.5, 8] so that reciprocals stay in the accurate domain and products
#: in range.  Errors: encoding e = 2^-17 per operand, truncation 2^-16, reciprocal relative 1e-3.
VALUES = st.lists(st.floats(0.5, 8.0, allow_nan=False), min_size=3, max_size=3)
LINEAR_BOUND = 2 * 2.0**-17
PRODUCT_BOUND = 8 * 2.0**-17 * 2 + 2.0**-16 + 1e-9
DIVISION_RELATIVE = 1.2e-3

#: function -> (absolute bound, relative bound); comparisons and max/min are exact up to the encoding.
BINARY: dict[Callable[..., Any], tuple[float, float]] = {
    torch.add: (LINEAR_BOUND, 0.0), torch.sub: (LINEAR_BOUND, 0.0), torch.subtract: (LINEAR_BOUND, 0.0),
    torch.mul: (PRODUCT_BOUND, 0.0), torch.multiply: (PRODUCT_BOUND, 0.0),
    torch.div: (4 * 2.0**-16, DIVISION_RELATIVE), torch.true_divide: (4 * 2.0**-16, DIVISION_RELATIVE),
    torch.divide: (4 * 2.0**-16, DIVISION_RELATIVE), torch.matmul: (3 * PRODUCT_BOUND, 0.0),
    torch.maximum: (LINEAR_BOUND, 0.0), torch.minimum: (LINEAR_BOUND, 0.0),
    torch.lt: (0.0, 0.0), torch.gt: (0.0, 0.0), torch.le: (0.0, 0.0), torch.ge: (0.0, 0.0),
    torch.eq: (0.0, 0.0), torch.ne: (0.0, 0.0),
}
OPERATORS: dict[Callable[..., Any], tuple[float, float]] = {
    operator.add: (LINEAR_BOUND, 0.0), operator.sub: (LINEAR_BOUND, 0.0), operator.mul: (PRODUCT_BOUND, 0.0),
    operator.truediv: (4 * 2.0**-16, DIVISION_RELATIVE), operator.matmul: (3 * PRODUCT_BOUND, 0.0),
    operator.lt: (0.0, 0.0), operator.gt: (0.0, 0.0), operator.le: (0.0, 0.0), operator.ge: (0.0, 0.0),
}
#: Functions of one SharedTensor (plus public parameters).  Only clamp and clip take a second tensor operand
#: (min, max): with a public tensor first and a shared bound they must refuse.  The others have no second
#: operand, so "public first" does not arise (they are compared with torch in test_tensor.py and the
#: approximation and comparison tests).
UNARY = [function for function in _TORCH_FUNCTIONS
         if function not in BINARY and function not in (torch.cat, torch.concat, torch.stack, torch.where)]
BOUNDED = (torch.clamp, torch.clip)


def test_the_battery_covers_every_dispatched_function() -> None:
    assert set(BINARY) | set(UNARY) | {torch.cat, torch.concat, torch.stack, torch.where} == set(_TORCH_FUNCTIONS)


def _plain(function: Callable[..., Any], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    result = function(a, b)
    return result.to(torch.float64)


def _both_orders(session: smpc.Session, public: list[float], secret: list[float]) -> dict[str, Any]:
    shared = session.share(torch.tensor(secret, dtype=torch.float64) if session.rank == 0 else None, owner=0)
    plain = torch.tensor(public, dtype=torch.float64)
    opened: dict[str, Any] = {}
    for table in (BINARY, OPERATORS):
        for function in table:
            name = getattr(function, "__name__", str(function))
            for order, args in (("public first", (plain, shared)), ("shared first", (shared, plain))):
                try:
                    opened[f"{name} {order}"] = function(*args).reveal()
                except TypeError as error:
                    opened[f"{name} {order}"] = error
    for name, call in (("where", lambda: torch.where(shared > 2.0, plain, shared)),
                       ("where reversed", lambda: torch.where(shared > 2.0, shared, plain))):
        opened[name] = call().reveal()
    refusals: dict[str, str] = {}
    for function in BOUNDED:
        for keyword in ("min", "max"):
            try:
                function(plain, **{keyword: shared})
                refusals[f"{function.__name__} ({keyword} shared)"] = "accepted"
            except TypeError as error:
                refusals[f"{function.__name__} ({keyword} shared)"] = str(error)
    for function in (torch.cat, torch.stack):
        try:
            function([plain, shared])
            refusals[function.__name__] = "accepted"
        except TypeError as error:
            refusals[function.__name__] = str(error)
    # A public bool condition selects locally (exact integer products); some operand must still be shared.
    opened["where public condition"] = torch.where(plain > 2.0, shared, plain).reveal()
    try:
        smpc.where(plain > 2.0, plain, plain)
        refusals["where (nothing shared)"] = "accepted"
    except TypeError as error:
        refusals["where (nothing shared)"] = str(error)
    opened["refusals"] = refusals
    return opened


@settings(max_examples=3)  # each example runs 34 shared operations, 8 of them divisions (a signed normalization each)
@given(public=VALUES, secret=VALUES)
def test_public_operand_first_and_second(public: list[float], secret: list[float]) -> None:
    secret = [s + 0.25 if abs(s - p) < 0.01 else s for s, p in zip(secret, public)]  # no ties to compare
    opened = run_parties(lambda session: _both_orders(session, public, secret), 3)[0]
    a, b = torch.tensor(public, dtype=torch.float64), torch.tensor(secret, dtype=torch.float64)
    misses = []
    for table in (BINARY, OPERATORS):
        for function, (absolute, relative) in table.items():
            name = getattr(function, "__name__", str(function))
            for order, (x, y) in (("public first", (a, b)), ("shared first", (b, a))):
                got = opened[f"{name} {order}"]
                if isinstance(got, TypeError):
                    if name not in str(got):
                        misses.append(f"{name} {order}: TypeError not naming it: {got}")
                    continue
                want = _plain(function, x, y)
                if got.shape != want.shape:
                    misses.append(f"{name} {order}: shape {tuple(got.shape)} != {tuple(want.shape)}")
                    continue
                bound = absolute + relative * want.abs()
                if bool(((got - want).abs() > bound).any()):
                    misses.append(f"{name} {order}: {got.tolist()} != {want.tolist()}")
    assert torch.allclose(opened["where"], torch.where(b > 2.0, a, b), atol=LINEAR_BOUND)
    assert torch.allclose(opened["where reversed"], torch.where(b > 2.0, b, a), atol=LINEAR_BOUND)
    assert torch.allclose(opened["where public condition"], torch.where(a > 2.0, b, a), atol=LINEAR_BOUND)
    for name, outcome in opened["refusals"].items():
        if outcome == "accepted" or name.split(" ")[0] not in outcome:
            misses.append(f"{name}: {outcome}")
    assert not misses, "; ".join(misses)


@pytest.mark.parametrize("function", [torch.div, torch.sub, torch.matmul])
def test_the_reported_case(function: Callable[..., Any]) -> None:
    """torch.div(tensor([1., 2.]), x) with x = [2, 4] is [0.5, 0.5], not the dot product 10."""
    def program(session: smpc.Session) -> torch.Tensor:
        x = session.share(torch.tensor([2.0, 4.0]) if session.rank == 0 else None, owner=0)
        return function(torch.tensor([1.0, 2.0], dtype=torch.float64), x).reveal()

    got = run_parties(program, 2)[0]
    want = function(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1.2e-3, atol=2e-4)
