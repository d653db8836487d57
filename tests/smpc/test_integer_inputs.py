"""Integer tensors and arrays (int64 included) are exact integers: shared as k * 2^frac_bits, revealed as exactly
k, mixed with floats as any fixed-point value; |k| >= 2^int_bits is refused on the owner, never wrapped; public
integer multipliers that could wrap the ring are refused.  Both protocol families, threads."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

import smpc
from tests.support.harness import REPLICATED, Parties, run_parties

FAMILIES = [Parties(3, "dealer"), REPLICATED]
UNIT = 2.0 ** -16
INTEGERS = torch.tensor([-32767, -1, 0, 1, 12345, 32767], dtype=torch.int64)


def _shared(session: smpc.Session, value: Any, owner: int) -> smpc.SharedTensor:
    return session.share(value if session.rank == owner else None, owner=owner)


def _round_trip(session: smpc.Session) -> dict[str, torch.Tensor]:
    values = {
        "int64": INTEGERS, "int32": INTEGERS.to(torch.int32), "numpy int64": INTEGERS.numpy(),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8), "bool": torch.tensor([True, False]),
    }
    return {name: _shared(session, value, 0).reveal() for name, value in values.items()}


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_integers_in_range_round_trip_exactly(parties: Parties) -> None:
    for revealed in run_parties(_round_trip, parties):
        for name in ("int64", "int32", "numpy int64"):
            assert revealed[name].dtype == torch.float64 and revealed[name].tolist() == INTEGERS.tolist(), name
        assert revealed["uint8"].tolist() == [0.0, 255.0] and revealed["bool"].tolist() == [1.0, 0.0]


def _share_refused(value: Any, session: smpc.Session) -> str:
    if session.rank != 0:
        return "not the owner"
    try:
        session.share(value, owner=0)
    except ValueError as error:
        return str(error)
    return "accepted"


@pytest.mark.parametrize("value", [
    torch.tensor([5, 32768]), torch.tensor([-(1 << 63)]), torch.tensor([(1 << 64) - 1], dtype=torch.uint64),
    np.array([40000], dtype=np.int64),
], ids=["int64 2^15", "int64 min", "uint64 max", "numpy 40000"])
def test_integers_outside_the_range_are_refused_on_the_owner(value: Any) -> None:
    """One line naming the integer, on the owner, before anything is sent (so the others never wait)."""
    outcome = run_parties(functools.partial(_share_refused, value), Parties(2, "dealer"), recv_timeout=5.0)[0]
    largest = [k for k in value.tolist() if abs(k) >= 32768][0]
    assert outcome.startswith(f"integer {largest} is outside the safe fixed-point range |v| < 2^15 = 32768")
    assert "\n" not in outcome


def _mixed(session: smpc.Session) -> dict[str, torch.Tensor]:
    counts = _shared(session, torch.tensor([3, -7, 100]), 0)
    rates = _shared(session, torch.tensor([0.5, 0.25, -1.5], dtype=torch.float64), 1)
    matrix = _shared(session, torch.tensor([[2, 0], [1, -4], [0, 3]]), 2)
    return {
        "int * float": (counts * rates).reveal(),
        "int + float": (counts + rates).reveal(),
        "int + public float": (counts + 0.75).reveal(),
        "float * public int tensor": (rates * torch.tensor([2, -3, 4])).reveal(),
        "int @ int": (counts @ matrix).reveal(),
        "float + public int tensor": (rates + torch.tensor([1, 2, 3])).reveal(),
    }


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_integers_mix_with_floats_as_fixed_point_values(parties: Parties) -> None:
    expected = {
        "int * float": [1.5, -1.75, -150.0], "int + float": [3.5, -6.75, 98.5],
        "int + public float": [3.75, -6.25, 100.75],
        "float * public int tensor": [1.0, -0.75, -6.0], "int @ int": [-1.0, 328.0],
        "float + public int tensor": [1.5, 2.25, 1.5],
    }
    for revealed in run_parties(_mixed, parties):
        for name, values in expected.items():
            # Exact inputs: only a product's truncation (floor or floor + 1) can move the last unit.
            assert torch.allclose(revealed[name], torch.tensor(values, dtype=torch.float64), rtol=0, atol=UNIT), name


def _multiply_by(multiplier: Any, matmul: bool, session: smpc.Session) -> str:
    x = _shared(session, torch.tensor([1.0, 2.0]), 0)
    try:
        product = x @ multiplier if matmul else x * multiplier
    except ValueError as error:
        return str(error)
    return f"accepted {product.reveal().tolist()}"


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_integer_multipliers_that_could_wrap_the_ring_are_refused(parties: Parties) -> None:
    """x * k for |k| >= 2^(63 - int_bits - frac_bits) = 2^32 could wrap the ring into a plausible number: refused
    on every party (the multiplier is public); below it the exact product is computed."""
    refused = run_parties(functools.partial(_multiply_by, 1 << 32, False), parties)
    assert refused == ["integer multiplier 4294967296 could wrap the 64-bit ring (products need |k| < 2^32 with "
                       "|x| < 2^15 at 16 fractional bits); multiply by a float or rescale"] * 3
    summed = run_parties(functools.partial(_multiply_by, torch.full((2,), 1 << 31), True), parties)
    assert all(outcome.startswith("integer multiplier 2147483648 (over 2 terms) could wrap") for outcome in summed)
    assert run_parties(functools.partial(_multiply_by, 3, False), parties)[0] == "accepted [3.0, 6.0]"
