"""Deferred truncation (``smpc.deferred``): a product's truncation waits for the value's first use, and a product
by a public float folds into it.  Against plain float64 torch (values) and against the protocols' round counts.

Bounds, with e = 2^-(frac_bits+1) the encoding error and u = 2^-frac_bits one unit: a value v computed within b,
times a public c, is within b (|c| + e) + |v| e + u, which covers both the folded product (one
truncation) and the one that settled first (two).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from tests.support.checks import PARTIES, check_all, run_and_collect
from tests.support.harness import REPLICATED, run_parties, share_from
from tests.support.strategies import float_arrays

E = math.ldexp(1.0, -17)
U = math.ldexp(1.0, -16)


def times_public(value: torch.Tensor, bound: Any, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(value * c, its bound) for a value computed within ``bound`` (see the module docstring)."""
    bound = torch.as_tensor(bound, dtype=torch.float64)
    return value * c, bound * (abs(c) + E) + value.abs() * E + U


@PARTIES
@given(data=st.data())
def test_products_by_public_floats_match_torch(n_parties: int, data: st.DataObject) -> None:
    """(x * y) c, (x @ y^T) c, mean(x) c and (x * y) c d, with c and d drawn across the fold's limit (|C| up to
    2^15 folds, larger settles first) and chains that fold once and then settle: within the bound."""
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=4), label="shape")
    x = data.draw(float_arrays(shape, 60.0), label="x")
    y = data.draw(float_arrays(shape, 60.0), label="y")
    c = data.draw(st.one_of(st.floats(-0.5, 0.5), st.sampled_from([0.0, 0.5, -0.5, 0.75, 3.0, 1e-4])), label="c")
    d = data.draw(st.one_of(st.floats(-2.0, 2.0), st.sampled_from([0.01, 0.5])), label="d")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sy = share_from(session, [x, y])
        return {"(x*y)c": ((sx * sy) * c).reveal(), "(x@yT)c": ((sx @ sy.t()) * c).reveal(),
                "mean(x)c": (sx.mean() * c).reveal(), "(x*y)cd": ((sx * sy) * c * d).reveal(),
                "c(x*y)": (c * (sx * sy)).reveal(), "x*y+x": (sx * sy + sx).reveal(),
                "y-x*y": (sy - sx * sy).reveal(), "sigmoid(x*y-y)": (sx * sy - sy).sigmoid().reveal()}

    product_error = x.abs() * E + y.abs() * E + E * E + U
    matmul_error = (torch.matmul(x.abs(), torch.ones_like(y).t()) + torch.matmul(torch.ones_like(x), y.abs().t())
                    ) * E + shape[1] * E * E + U
    xyc, xyc_bound = times_public(x * y, product_error, c)
    check_all(run_and_collect(program, n_parties), {
        "(x*y)c": (xyc, xyc_bound), "c(x*y)": (xyc, xyc_bound),
        "(x@yT)c": times_public(x @ y.t(), matmul_error, c),
        "mean(x)c": times_public(x.mean(), E + U, c),
        "(x*y)cd": times_public(xyc, xyc_bound, d),
        # a sum waits with the settled term added after the truncation; sigmoid settles it in its call
        "x*y+x": (x * y + x, product_error + E), "y-x*y": (y - x * y, product_error + E),
        "sigmoid(x*y-y)": (torch.sigmoid(x * y - y), 3.2e-4 + 0.25 * (product_error + E)),
    })


def _rounds(session: smpc.Session) -> dict[str, torch.Tensor]:
    x = session.share(torch.linspace(-3, 3, 12).reshape(3, 4) if session.rank == 0 else None, owner=0)
    y = session.share(torch.linspace(1, 2, 12).reshape(3, 4) if session.rank == 1 else None, owner=1)
    cases = {
        "x*y": lambda: x * y, "(x*y)*0.25": lambda: (x * y) * 0.25, "(x*y)*0.75": lambda: (x * y) * 0.75,
        "(x@yT)*0.01*0.01": lambda: (x @ y.t()) * 0.01 * 0.01, "mean(x)*0.25": lambda: x.mean() * 0.25,
        "mean(x)*0.5": lambda: x.mean() * 0.5,
        "mean(x)": x.mean, "mean of one": lambda: x.reshape(-1)[:1].mean(),
    }
    counts = {}
    for name, case in cases.items():
        before = session.stats.rounds
        value = case()
        deferred = session.stats.rounds - before
        shape = value.shape, value.detach().shape  # neither settles
        assert session.stats.rounds - before == deferred and shape[0] == shape[1]
        assert value.settle() is value
        settled = session.stats.rounds - before
        value.settle()
        assert session.stats.rounds - before == settled  # settled once
        counts[name] = (deferred, settled)
    return counts


@pytest.mark.parametrize("n_parties", [3, REPLICATED], ids=["dealer", "replicated"])
def test_a_fold_saves_the_second_truncation(n_parties: int) -> None:
    """Rounds before and after ``settle``: a product by 0.25 or 0.5 costs no more than the product alone (one
    truncation, 1 round in the dealer family, 2 in the replicated one), by 0.75 (|C| = 3 2^14, past 2^15) two;
    0.01 twice folds once, then settles and defers the second.  A mean over 12 divides by 12, not a power of
    two, so its offset needs one bit more: a fold by 0.25 fits, one by 0.5 does not; a mean of one element
    divides by 1, for free.  The truncation waits for settle."""
    trunc, product = (2, 0) if getattr(n_parties, "protocol", "dealer") == "replicated" else (1, 1)
    counts = run_parties(_rounds, n_parties)[0]
    assert counts == {
        "x*y": (product, product + trunc), "(x*y)*0.25": (product, product + trunc),
        "(x*y)*0.75": (product + trunc, product + 2 * trunc),
        "(x@yT)*0.01*0.01": (product + trunc, product + 2 * trunc),
        "mean(x)*0.25": (0, trunc), "mean(x)*0.5": (trunc, 2 * trunc), "mean(x)": (0, trunc),
        "mean of one": (0, 0),
    }


def _checked_and_local(session: smpc.Session) -> list[Any]:
    x = session.share(torch.tensor([1.5, -2.0, 3.0]) if session.rank == 0 else None, owner=0)
    before = session.stats.rounds
    value = (x * x) * 0.25
    rounds = session.stats.rounds - before
    return [rounds, value.reveal()]


def test_no_deferral_with_check_range_and_no_fold_with_local_shifts() -> None:
    """``check_range`` tests every product before its truncation, so nothing is deferred (the rounds come at
    once); the two-party local shift defers but never folds (its bound is product_bits), and both are right."""
    expected = torch.tensor([1.5, -2.0, 3.0], dtype=torch.float64) ** 2 * 0.25
    checked = run_parties(_checked_and_local, 3, check_range=True)[0]
    local = run_parties(_checked_and_local, 2, truncation="local", failure_budget=1e-3)[0]
    assert checked[0] > 0 and local[0] == 1  # local: the Beaver opening only; its shifts cost no round
    for _, value in (checked, local):
        assert torch.allclose(value, expected, atol=4 * U)


def _layer(session: smpc.Session) -> tuple[smpc.SharedTensor, smpc.SharedTensor, smpc.SharedTensor]:
    """x (4 x 3, party 0's), w (3 x 2, party 1's) and b (2, party 0's): a small layer's operands."""
    x = session.share(torch.linspace(-3, 3, 12).reshape(4, 3) if session.rank == 0 else None, owner=0)
    w = session.share(torch.linspace(-1, 2, 6).reshape(3, 2) if session.rank == 1 else None, owner=1)
    b = session.share(torch.tensor([0.5, -1.25]) if session.rank == 0 else None, owner=0)
    return x, w, b


def _sums_and_calls(session: smpc.Session) -> dict[str, Any]:
    x, w, b = _layer(session)
    stats = session.stats
    out: dict[str, Any] = {}
    (x @ w + b).sigmoid()  # the replicated family's helper plans a call it has seen: both measured calls repeat
    for name, settle_first in (("deferred", False), ("settled", True)):
        z = x @ w + b
        rounds, sent = stats.rounds, stats.bytes_sent
        if settle_first:
            z.settle()
        s = z.sigmoid()
        out[f"{name} rounds"], out[f"{name} bytes"] = stats.rounds - rounds, stats.bytes_sent - sent
        rounds = stats.rounds
        z.settle()  # settled by the call: nothing more to do
        out[f"{name} settle rounds"] = stats.rounds - rounds
        out[f"{name} sigmoid"], out[f"{name} z"] = s.reveal(), z.reveal()
    out["b - x@w"], out["x@w - b"] = (b - x @ w).reveal(), (x @ w - b).reveal()
    out["relu(x@w - b)"] = (x @ w - b).relu().reveal()
    out["(x@w - b) * 0.5"] = ((x @ w - b) * 0.5).reveal()
    tracked = w.detach().requires_grad_()
    out["tracked relu"] = (x @ tracked - b).relu().reveal()
    return out


@pytest.mark.parametrize("n_parties", [3, REPLICATED], ids=["dealer", "replicated"])
def test_a_sum_with_a_settled_value_stays_deferred_and_a_call_settles_it(n_parties: Any) -> None:
    """x @ w + b, b - x @ w and x @ w - b wait for their truncation with b added after it; sigmoid (or ReLU)
    of one settles it inside the call: the values of truncating first, one round fewer in the replicated
    family (the same in the dealer one), no more bytes, and the input is settled for later use."""
    replicated = getattr(n_parties, "protocol", "dealer") == "replicated"
    xw = torch.linspace(-3, 3, 12, dtype=torch.float64).reshape(4, 3) @ torch.linspace(
        -1, 2, 6, dtype=torch.float64).reshape(3, 2)
    bias = torch.tensor([0.5, -1.25], dtype=torch.float64)
    for out in run_parties(_sums_and_calls, n_parties):
        assert out["deferred rounds"] == out["settled rounds"] - (1 if replicated else 0)
        assert out["deferred bytes"] <= out["settled bytes"]
        assert out["deferred settle rounds"] == out["settled settle rounds"] == 0
        for name in ("deferred", "settled"):
            assert torch.allclose(out[f"{name} z"], xw + bias, atol=1e-3)
            assert torch.allclose(out[f"{name} sigmoid"], torch.sigmoid(xw + bias), atol=1e-3)
        assert torch.allclose(out["b - x@w"], bias - xw, atol=1e-3)
        assert torch.allclose(out["x@w - b"], xw - bias, atol=1e-3)
        assert torch.allclose(out["relu(x@w - b)"], torch.relu(xw - bias), atol=1e-3)
        assert torch.allclose(out["tracked relu"], torch.relu(xw - bias), atol=1e-3)
        assert torch.allclose(out["(x@w - b) * 0.5"], (xw - bias) * 0.5, atol=1e-3)


def _settled_together(session: smpc.Session) -> dict[str, Any]:
    x = session.share(torch.linspace(-3, 3, 12).reshape(4, 3) if session.rank == 0 else None, owner=0)
    w = session.share(torch.linspace(-1, 2, 3).reshape(3, 1) if session.rank == 1 else None, owner=1)
    b = session.share(torch.tensor([0.5]) if session.rank == 0 else None, owner=0)
    stats = session.stats
    out: dict[str, Any] = {}
    new_w = w - (x.t() @ x[:, :1]) * 0.125  # a training step's updates: both wait
    new_b = b - x.mean() * 0.25
    rounds = stats.rounds
    new_w.settle()
    out["first"] = stats.rounds - rounds
    rounds = stats.rounds
    new_b.settle()
    out["second"] = stats.rounds - rounds
    product = x * x
    folded = product * 0.25  # product's truncation went into folded's: not settled with it
    rounds = stats.rounds
    folded.settle()
    out["folded rounds"] = stats.rounds - rounds
    rounds = stats.rounds
    product.settle()  # used after all: settles on its own
    out["product after"] = stats.rounds - rounds
    out.update(w=new_w.reveal(), b=new_b.reveal(), folded=folded.reveal(), product=product.reveal())
    return out


@pytest.mark.parametrize("n_parties", [3, REPLICATED], ids=["dealer", "replicated"])
def test_waiting_truncations_settle_together_in_the_replicated_family(n_parties: Any) -> None:
    """Two updates of a training step wait; settling one settles both in the replicated family (2 rounds, the
    second free), one at a time in the dealer family.  A product folded into another leaves the list and
    settles on its own when used after all.  Values as plain torch."""
    replicated = getattr(n_parties, "protocol", "dealer") == "replicated"
    trunc = 2 if replicated else 1
    x = torch.linspace(-3, 3, 12, dtype=torch.float64).reshape(4, 3)
    w = torch.linspace(-1, 2, 3, dtype=torch.float64).reshape(3, 1)
    for out in run_parties(_settled_together, n_parties):
        assert (out["first"], out["second"]) == ((trunc, 0) if replicated else (trunc, trunc))
        assert (out["folded rounds"], out["product after"]) == (trunc, trunc)
        assert torch.allclose(out["w"], w - (x.t() @ x[:, :1]) * 0.125, atol=1e-3)
        assert torch.allclose(out["b"], 0.5 - x.mean() * 0.25, atol=1e-3)
        assert torch.allclose(out["folded"], x * x * 0.25, atol=1e-3)
        assert torch.allclose(out["product"], x * x, atol=1e-3)


def _shared_truncations(session: smpc.Session) -> dict[str, Any]:
    x, w, b = _layer(session)
    stats = session.stats
    out: dict[str, Any] = {}

    def rounds(step: Any) -> int:
        before = stats.rounds
        step()
        return stats.rounds - before

    z = x @ w
    y = z + b
    out["sigmoid of the sum"] = rounds(y.sigmoid)
    out["its product after"] = rounds(z.settle)  # settled by the call, through the sum
    out["sum - b - product"] = (y - b - z).reveal()
    z = x @ w
    negated, copy = -z, z.detach()
    out["negation"] = rounds(negated.settle)
    out["product and copy after"] = rounds(z.settle) + rounds(copy.settle)
    out["negation + product"], out["copy - product"] = (negated + z).reveal(), (copy - z).reveal()
    y_public = (torch.linspace(-3, 3, 8).reshape(4, 2) if session.rank == 1 else None)
    other = session.share(y_public, owner=1)
    out["x@w - 1.5 > y"] = rounds(lambda: (x @ w - 1.5 > other).settle())
    out["settled first"] = rounds(lambda: ((x @ w).settle() - 1.5 > other).settle())
    out["comparison"] = (x @ w - 1.5 > other).reveal()
    return out


@pytest.mark.parametrize("n_parties", [3, REPLICATED], ids=["dealer", "replicated"])
def test_values_made_from_a_waiting_product_share_its_truncation(n_parties: Any) -> None:
    """A sum, a negation and a detached copy of a product whose truncation waits share that one truncation:
    whichever is used first runs it (or a call takes it in), the others follow locally and exactly (y - b - z,
    -z + z and copy - z are exactly 0).  A comparison of x @ w - 1.5 takes the truncation into its call: one
    round fewer than settling first in the replicated family, as many in the dealer family."""
    replicated = getattr(n_parties, "protocol", "dealer") == "replicated"
    trunc = 2 if replicated else 1
    xw = torch.linspace(-3, 3, 12, dtype=torch.float64).reshape(4, 3) @ torch.linspace(
        -1, 2, 6, dtype=torch.float64).reshape(3, 2)
    other = torch.linspace(-3, 3, 8, dtype=torch.float64).reshape(4, 2)
    for out in run_parties(_shared_truncations, n_parties):
        assert out["its product after"] == 0 and out["product and copy after"] == 0
        assert out["negation"] == trunc
        for name in ("sum - b - product", "negation + product", "copy - product"):
            assert torch.equal(out[name], torch.zeros_like(out[name])), name
        assert out["x@w - 1.5 > y"] == out["settled first"] - (1 if replicated else 0)
        assert torch.equal(out["comparison"], (xw - 1.5 > other).double())
