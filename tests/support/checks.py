"""Results of a shared computation against float64 torch: every party opened the same values, and each lies
within its stated bound.

A test states each bound (from the docstrings of what it tests); FLOAT_SLACK only absorbs the float64 rounding
of the comparison itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch

import smpc
from tests.support.harness import REPLICATED, run_parties

#: Float64 rounding slack of the comparisons themselves; never a substitute for a stated bound.
FLOAT_SLACK = 1e-12

#: Every test so marked runs for 2 and 3 parties of the dealer family and for the replicated family's 3.
PARTIES = pytest.mark.parametrize("n_parties", [2, 3, REPLICATED], ids=["2", "3", "3-replicated"])
#: Tests of the dealer family's own costs (rounds, bytes): 2 and 3 parties of that family.
DEALER_PARTIES = pytest.mark.parametrize("n_parties", [2, 3])

Program = Callable[[smpc.Session], Any]
#: Per result name: the float64 reference value and the bound on |result - reference| (a number or a tensor).
Expectations = Mapping[str, tuple[torch.Tensor, Any]]


def run_and_collect(program: Program, n_parties: int, **options: Any) -> dict[str, torch.Tensor]:
    """Run ``program`` (returning a dict of revealed tensors) on every party; all parties must have opened
    exactly the same values.  Returns party 0's dict."""
    results = run_parties(program, n_parties, **options)
    first = results[0]
    for rank, other in enumerate(results[1:], start=1):
        assert other.keys() == first.keys()
        for name, value in first.items():
            assert torch.equal(other[name], value), f"party {rank} opened a different {name}"
    return first


def check_all(got: Mapping[str, torch.Tensor], expected: Expectations) -> None:
    """Every named result has the expected shape and dtype and lies within its bound; reports all misses."""
    assert got.keys() == expected.keys()
    misses = []
    for name, (want, bound) in expected.items():
        value = got[name]
        if not isinstance(value, torch.Tensor) or value.dtype != torch.float64:
            misses.append(f"{name}: got {type(value).__name__} {getattr(value, 'dtype', '')}, not float64 tensor")
            continue
        if value.shape != want.shape:
            misses.append(f"{name}: shape {tuple(value.shape)} != {tuple(want.shape)}")
            continue
        error = (value - want).abs()
        excess = error - (torch.as_tensor(bound, dtype=torch.float64) + FLOAT_SLACK)
        if bool((excess > 0).any()):
            worst = int(excess.reshape(-1).argmax())
            misses.append(f"{name}: error {float(error.reshape(-1)[worst]):.3g} over its bound by "
                          f"{float(excess.reshape(-1)[worst]):.3g}")
    assert not misses, "; ".join(misses)
