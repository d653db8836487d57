"""fixedpoint.ring: exact matmul modulo 2^64 (both methods) and the unsigned right shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fixedpoint import logical_shift_right, ring_matmul, ring_matmul_add
from fixedpoint.ring import limb_width
from tests.support.strategies import Shape, matmul_shapes

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
RING = 1 << 64


def int64_arrays(shape: Shape) -> st.SearchStrategy[np.ndarray]:
    """Full-range int64 arrays (hypothesis favours the extremes 0, +-1, INT64_MIN, INT64_MAX too)."""
    return hnp.arrays(np.int64, shape, elements=st.integers(INT64_MIN, INT64_MAX))


def python_matmul_mod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference 2-D matmul in Python integers reduced into signed int64: independent of torch's kernels."""
    rows, inner = a.shape
    cols = b.shape[1]
    out = [[sum(int(a[i, j]) * int(b[j, k]) for j in range(inner)) % RING for k in range(cols)] for i in range(rows)]
    signed = [[v - RING if v > INT64_MAX else v for v in row] for row in out]
    return torch.tensor(signed, dtype=torch.int64)


@given(st.data())
def test_ring_matmul_matches_torch_int64(data: st.DataObject) -> None:
    """Both methods (and "auto") equal torch.matmul on int64, which wraps modulo 2^64, for every shape kind."""
    shape_a, shape_b = data.draw(matmul_shapes())
    a = torch.from_numpy(data.draw(int64_arrays(shape_a)))
    b = torch.from_numpy(data.draw(int64_arrays(shape_b)))
    expected = torch.matmul(a, b)
    for method in ("limbs", "int64", "auto"):
        got = ring_matmul(a, b, method=method)
        assert got.dtype == torch.int64
        assert got.shape == expected.shape, (method, shape_a, shape_b)
        assert torch.equal(got, expected), (method, shape_a, shape_b)


@given(st.data())
def test_ring_matmul_matches_python_integers(data: st.DataObject) -> None:
    """On matrices, the limb method equals matmul in Python integers reduced mod 2^64 (checks the reference)."""
    m, k, p = (data.draw(st.integers(1, 4)) for _ in range(3))
    a = torch.from_numpy(data.draw(int64_arrays((m, k))))
    b = torch.from_numpy(data.draw(int64_arrays((k, p))))
    expected = python_matmul_mod(a, b)
    assert torch.equal(ring_matmul(a, b, method="limbs"), expected)
    assert torch.equal(torch.matmul(a, b), expected)


@given(st.data())
def test_ring_matmul_add_accumulates_exactly(data: st.DataObject) -> None:
    """out += a @ b in place: on matrices (the GEMM accumulates, ``addmm_``) equal to Python integers mod
    2^64; for any other shape kind equal to out + torch.matmul(a, b)."""
    m, k, p = (data.draw(st.integers(1, 4)) for _ in range(3))
    a = torch.from_numpy(data.draw(int64_arrays((m, k))))
    b = torch.from_numpy(data.draw(int64_arrays((k, p))))
    out = torch.from_numpy(data.draw(int64_arrays((m, p))))
    expected = python_matmul_mod(a, b) + out  # int64 addition wraps modulo 2^64
    result = ring_matmul_add(out, a, b)
    assert result is out and torch.equal(out, expected)
    shape_a, shape_b = data.draw(matmul_shapes())
    a = torch.from_numpy(data.draw(int64_arrays(shape_a)))
    b = torch.from_numpy(data.draw(int64_arrays(shape_b)))
    shape = torch.matmul(a, b).shape
    out = torch.from_numpy(data.draw(int64_arrays(tuple(shape))))
    expected = out + torch.matmul(a, b)
    assert torch.equal(ring_matmul_add(out, a, b), expected)


def test_ring_matmul_extremes() -> None:
    """All-extreme operands (every limb 0xffff, or only the sign bit) with a long inner dimension."""
    k = 1000
    for value in (INT64_MIN, INT64_MAX, -1):
        a = torch.full((3, k), value, dtype=torch.int64)
        b = torch.full((k, 2), value, dtype=torch.int64)
        assert torch.equal(ring_matmul(a, b, method="limbs"), torch.matmul(a, b))


#: Inner dimensions of the shared matmuls the benchmarks run (up to 4096, doubled to 8192 by [E, A'] @ [B; D]),
#: and both sides of each limb-width step (the widest limb shrinks after 512, 2048 and 8192).
LONG_INNER = (1, 2, 17, 512, 513, 2048, 2049, 4096, 8192, 8193)


def extreme_limbs(width: int) -> int:
    """The int64 whose signed limbs of ``width`` bits are all -2^(width-1) (the top limb takes what is left):
    the largest limb magnitude there is, so k such products sum to k 2^(2 width - 2), the exactness bound."""
    value = sum(-(1 << (width - 1)) << (width * i) for i in range(-(-64 // width))) % RING
    return value - RING if value > INT64_MAX else value


@pytest.mark.parametrize("inner", LONG_INNER)
def test_limb_matmul_exact_for_long_inner_dimensions(inner: int) -> None:
    """The limb method (the one CUDA uses) equals the CPU's int64 matmul, exactly, for long inner dimensions:
    full-range random operands, and rows and columns of one extreme value each (every product of limbs at the
    largest magnitude and of one sign, so the float64 sums reach k 2^(2w-2) <= 2^53)."""
    generator = torch.Generator().manual_seed(inner)
    extremes = [INT64_MIN, INT64_MAX, -1, extreme_limbs(limb_width(inner)), extreme_limbs(limb_width(inner) - 1)]
    random_rows = torch.randint(INT64_MIN, INT64_MAX, (3, inner), generator=generator, dtype=torch.int64)
    a = torch.cat([random_rows, torch.tensor(extremes, dtype=torch.int64).reshape(-1, 1).expand(-1, inner)])
    random_cols = torch.randint(INT64_MIN, INT64_MAX, (inner, 2), generator=generator, dtype=torch.int64)
    b = torch.cat([random_cols, torch.tensor(extremes, dtype=torch.int64).reshape(1, -1).expand(inner, -1)], dim=1)
    assert torch.equal(ring_matmul(a, b, method="limbs"), ring_matmul(a, b, method="int64"))


def test_limb_width_is_the_widest_exact_one() -> None:
    """k sums of products of limbs up to 2^(w-1) stay within float64's exact 2^53, and one bit more would not."""
    for inner in (*LONG_INNER, 3, 1000, (1 << 19) - 1):
        width = limb_width(inner)
        assert max(inner, 2) * 4 ** (width - 1) <= 1 << 53, inner
        assert max(inner, 2) * 4**width > 1 << 53, inner


def test_ring_matmul_refusals() -> None:
    """Non-int64 operands, 0-d operands, unknown methods and too-long inner dimensions are refused."""
    a = torch.ones(2, 2, dtype=torch.int64)
    with pytest.raises(TypeError):
        ring_matmul(a.to(torch.float64), a)
    with pytest.raises(ValueError):
        ring_matmul(torch.tensor(3), a)
    with pytest.raises(ValueError):
        ring_matmul(a, a, method="gpu")
    long = torch.ones(1, 1 << 19, dtype=torch.int64)
    with pytest.raises(ValueError, match="inner dimension"):
        ring_matmul(long, long.T, method="limbs")


@given(hnp.arrays(np.int64, st.integers(1, 64), elements=st.integers(INT64_MIN, INT64_MAX)), st.integers(0, 63))
def test_logical_shift_right_matches_unsigned(values: np.ndarray, bits: int) -> None:
    """logical_shift_right(x, bits) == (x mod 2^64) >> bits in Python integers, read back as int64."""
    got = logical_shift_right(torch.from_numpy(values), bits)
    expected = []
    for value in values.tolist():
        shifted = (value % RING) >> bits
        expected.append(shifted - RING if shifted > INT64_MAX else shifted)
    assert got.dtype == torch.int64
    assert got.tolist() == expected
