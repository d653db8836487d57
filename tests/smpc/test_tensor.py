"""SharedTensor against plain float64 torch, on hypothesis-drawn shapes and values, for 2 and 3 parties.

Every expected value is computed in float64 from the drawn inputs; every bound is the one the docstrings
state, with e = 2^-(frac_bits+1) the encoding error and u = 2^-frac_bits the truncation error:
  * encoding / reveal / linear ops on one value: e per encoded input that enters the result;
  * x * y (shared or public float): |x| e + |y| e + e^2 + u;  x * integer k: |k| e (exact product);
  * x @ y: sum_j (|x_ij| + |y_jl|) e + k e^2 + u;  mean: e + u.
Inputs stay far enough inside |v| < 2^int_bits that every intermediate (products, sums) does too.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smpc
from tests.support.checks import PARTIES, check_all, run_and_collect
from tests.support.harness import run_parties, share_from
from tests.support.strategies import BROADCAST_PAIRS, SHAPES, float_arrays, int_arrays

DEFAULT_FRAC_BITS = 16
#: |values| for elementwise products (100 * 100 < 2^15) and for matmuls with inner dimension <= 8
#: (8 * 60 * 60 = 28800 < 2^15).
PRODUCT_RANGE = 100.0
MATMUL_RANGE = 60.0
MAX_INNER = 8


# -- bounds ----------------------------------------------------------------------------------------------
def encoding_error(frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """e = 2^-(frac_bits+1)."""
    return math.ldexp(1.0, -(frac_bits + 1))


def truncation_error(frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """u = 2^-frac_bits: one unit in the last place."""
    return math.ldexp(1.0, -frac_bits)


def product_bound(x: Any, y: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """|x| e + |y| e + e^2 + u, broadcast like x * y."""
    e = encoding_error(frac_bits)
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return x.abs() * e + y.abs() * e + e * e + truncation_error(frac_bits)


def matmul_bound(x: torch.Tensor, y: torch.Tensor, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """sum_j (|x_ij| + |y_jl|) e + k e^2 + u, shaped like x @ y (vectors and batches included)."""
    e = encoding_error(frac_bits)
    inner = x.shape[-1]
    spread = torch.matmul(x.abs(), torch.ones_like(y)) + torch.matmul(torch.ones_like(x), y.abs())
    return spread * e + inner * e * e + truncation_error(frac_bits)


# -- share and reveal ------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_share_and_reveal(n_parties: int, data: st.DataObject) -> None:
    """Sharing then revealing to all gives the value within e on every party; revealing to one party gives it
    there and None elsewhere; the int64 local shares add up (mod 2^64) to the encoded value."""
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), label="shape")
    value = data.draw(float_arrays(shape, 30000.0), label="value")
    owner = data.draw(st.integers(0, n_parties - 1), label="owner")
    target = data.draw(st.integers(0, n_parties - 1), label="target")

    def program(session: smpc.Session) -> tuple[Any, ...]:
        x = session.share(value if session.rank == owner else None, owner=owner)
        return x.shape, x.local_share, x.reveal(), x.reveal(to=target)

    results = run_parties(program, n_parties)
    encoded = smpc.FixedPoint().encode(value)
    total = torch.zeros_like(encoded)
    replicated = getattr(n_parties, "protocol", "dealer") == "replicated"
    for rank, (shape_seen, local_share, to_all, to_one) in enumerate(results):
        assert shape_seen == value.shape
        # A replicated party's local share holds its two parts, (x_i, x_{i+1}); x_i add up to the value.
        assert local_share.dtype == torch.int64 and local_share.shape == ((2,) if replicated else ()) + value.shape
        total += local_share[0] if replicated else local_share
        check_all({"to all": to_all}, {"to all": (value, encoding_error())})
        if rank == target:
            check_all({"to one": to_one}, {"to one": (value, encoding_error())})
        else:
            assert to_one is None, f"party {rank} got a value revealed to party {target} only"
    assert torch.equal(total, encoded)


# -- elementwise arithmetic ------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_elementwise_shared_with_shared(n_parties: int, data: st.DataObject) -> None:
    """x + y, x - y, x * y (operators, methods and torch functions) for two shared operands of broadcastable
    shapes, owned by different parties."""
    shapes = data.draw(BROADCAST_PAIRS, label="shapes")
    x = data.draw(float_arrays(shapes.input_shapes[0], PRODUCT_RANGE), label="x")
    y = data.draw(float_arrays(shapes.input_shapes[1], PRODUCT_RANGE), label="y")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sy = share_from(session, [x, y])
        ops = {
            "x+y": sx + sy, "x-y": sx - sy, "y-x": sy - sx, "x*y": sx * sy, "y*x": sy * sx,
            "x.mul(y)": sx.mul(sy), "x.square()": sx.square(),
            "torch.add": torch.add(sx, sy), "torch.sub": torch.sub(sx, sy), "torch.mul": torch.mul(sx, sy),
        }
        return {name: value.reveal() for name, value in ops.items()}

    e = encoding_error()
    check_all(run_and_collect(program, n_parties), {
        "x+y": (x + y, 2 * e), "x-y": (x - y, 2 * e), "y-x": (y - x, 2 * e),
        "x*y": (x * y, product_bound(x, y)), "y*x": (y * x, product_bound(y, x)),
        "x.mul(y)": (x * y, product_bound(x, y)), "x.square()": (x * x, product_bound(x, x)),
        "torch.add": (x + y, 2 * e), "torch.sub": (x - y, 2 * e), "torch.mul": (x * y, product_bound(x, y)),
    })


@PARTIES
@given(data=st.data())
def test_elementwise_with_python_numbers(n_parties: int, data: st.DataObject) -> None:
    """+ - * with a Python int (exact product) and a Python float, on either side of the operator."""
    x = data.draw(float_arrays(data.draw(SHAPES, label="shape"), PRODUCT_RANGE), label="x")
    k = data.draw(st.integers(-100, 100), label="k")
    c = data.draw(st.floats(-PRODUCT_RANGE, PRODUCT_RANGE, allow_nan=False), label="c")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        ops = {
            "x+k": sx + k, "k+x": k + sx, "x-k": sx - k, "k-x": k - sx, "x*k": sx * k, "k*x": k * sx,
            "x+c": sx + c, "c+x": c + sx, "x-c": sx - c, "c-x": c - sx, "x*c": sx * c, "c*x": c * sx,
        }
        return {name: value.reveal() for name, value in ops.items()}

    e = encoding_error()
    exact_int = abs(k) * e
    check_all(run_and_collect(program, n_parties), {
        "x+k": (x + k, e), "k+x": (k + x, e), "x-k": (x - k, e), "k-x": (k - x, e),
        "x*k": (x * k, exact_int), "k*x": (k * x, exact_int),
        "x+c": (x + c, 2 * e), "c+x": (c + x, 2 * e), "x-c": (x - c, 2 * e), "c-x": (c - x, 2 * e),
        "x*c": (x * c, product_bound(x, c)), "c*x": (c * x, product_bound(x, c)),
    })


@PARTIES
@given(data=st.data())
def test_elementwise_with_public_tensors(n_parties: int, data: st.DataObject) -> None:
    """+ - * with public float64 and int64 tensors (and a numpy array) of broadcastable shapes, on either side,
    through operators and torch functions."""
    shapes = data.draw(BROADCAST_PAIRS, label="shapes")
    x = data.draw(float_arrays(shapes.input_shapes[0], PRODUCT_RANGE), label="x")
    p = data.draw(float_arrays(shapes.input_shapes[1], PRODUCT_RANGE), label="p")
    q = data.draw(int_arrays(shapes.input_shapes[1], 100), label="q")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        ops = {
            "x+p": sx + p, "p+x": p + sx, "x-p": sx - p, "p-x": p - sx, "x*p": sx * p, "p*x": p * sx,
            "torch.add(p,x)": torch.add(p, sx), "torch.sub(p,x)": torch.sub(p, sx),
            "torch.mul(p,x)": torch.mul(p, sx), "x+numpy": sx + p.numpy(),
            "x+q": sx + q, "q-x": q - sx, "x*q": sx * q, "q*x": q * sx,
        }
        return {name: value.reveal() for name, value in ops.items()}

    e = encoding_error()
    qf = q.to(torch.float64)
    check_all(run_and_collect(program, n_parties), {
        "x+p": (x + p, 2 * e), "p+x": (p + x, 2 * e), "x-p": (x - p, 2 * e), "p-x": (p - x, 2 * e),
        "x*p": (x * p, product_bound(x, p)), "p*x": (p * x, product_bound(x, p)),
        "torch.add(p,x)": (p + x, 2 * e), "torch.sub(p,x)": (p - x, 2 * e),
        "torch.mul(p,x)": (p * x, product_bound(x, p)), "x+numpy": (x + p, 2 * e),
        "x+q": (x + qf, torch.full_like(x + qf, e)), "q-x": (qf - x, torch.full_like(x + qf, e)),
        "x*q": (x * qf, (qf.abs() * e).expand_as(x * qf)), "q*x": (qf * x, (qf.abs() * e).expand_as(x * qf)),
    })


def test_python_float_operand_keeps_float64_precision() -> None:
    """A Python float operand is a float64 and is encoded as one: x + 1000.1 is within 2e of the real sum
    (a float32 detour would be off by 2.4e-5 > 2e = 1.5e-5)."""
    x = torch.tensor([0.0, 1.0, -2.5], dtype=torch.float64)
    c = 1000.1

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        return {"x+c": (sx + c).reveal(), "c-x": (c - sx).reveal(), "x-c": (sx - c).reveal()}

    e = encoding_error()
    check_all(run_and_collect(program, 2), {"x+c": (x + c, 2 * e), "c-x": (c - x, 2 * e), "x-c": (x - c, 2 * e)})


# -- matrix products -------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_matmul(n_parties: int, data: st.DataObject) -> None:
    """@ for vector@vector, matrix@vector, vector@matrix, matrix@matrix, batched@matrix, batched@batched,
    shared@public, public@shared (float and integer publics) and torch.matmul."""
    m, p, batch = (data.draw(st.integers(1, 4), label=name) for name in ("m", "p", "batch"))
    k = data.draw(st.integers(1, MAX_INNER), label="k")

    def draw(*shape: int) -> torch.Tensor:
        return data.draw(float_arrays(shape, MATMUL_RANGE))

    v1, v2, a, b, a_batched, b_batched = draw(k), draw(k), draw(m, k), draw(k, p), draw(batch, m, k), draw(batch, k, p)
    public_right, public_left = draw(k, p), draw(m, k)
    int_right = data.draw(int_arrays((k, p), 50), label="int_right")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sv1, sv2, sa, sb, sab, sbb = share_from(session, [v1, v2, a, b, a_batched, b_batched])
        ops = {
            "vec@vec": sv1 @ sv2, "mat@vec": sa @ sv2, "vec@mat": sv1 @ sb, "mat@mat": sa @ sb,
            "batch@mat": sab @ sb, "batch@batch": sab @ sbb, "torch.matmul": torch.matmul(sa, sb),
            "x.matmul": sa.matmul(sb), "shared@public": sa @ public_right, "public@shared": public_left @ sb,
            "batch@public": sab @ public_right, "public_vec@shared": public_right[:, 0] @ sb.T.T,
            "torch.matmul(public,shared)": torch.matmul(public_left, sb),
            "shared@int": sa @ int_right, "int@shared": int_right.T @ sa.T,
        }
        return {name: value.reveal() for name, value in ops.items()}

    e = encoding_error()
    ints = int_right.to(torch.float64)
    check_all(run_and_collect(program, n_parties), {
        "vec@vec": (v1 @ v2, matmul_bound(v1, v2)), "mat@vec": (a @ v2, matmul_bound(a, v2)),
        "vec@mat": (v1 @ b, matmul_bound(v1, b)), "mat@mat": (a @ b, matmul_bound(a, b)),
        "batch@mat": (a_batched @ b, matmul_bound(a_batched, b)),
        "batch@batch": (a_batched @ b_batched, matmul_bound(a_batched, b_batched)),
        "torch.matmul": (a @ b, matmul_bound(a, b)), "x.matmul": (a @ b, matmul_bound(a, b)),
        "shared@public": (a @ public_right, matmul_bound(a, public_right)),
        "public@shared": (public_left @ b, matmul_bound(public_left, b)),
        "batch@public": (a_batched @ public_right, matmul_bound(a_batched, public_right)),
        "public_vec@shared": (public_right[:, 0] @ b, matmul_bound(public_right[:, 0], b)),
        "torch.matmul(public,shared)": (public_left @ b, matmul_bound(public_left, b)),
        # Exact products with integers: only the shared operand's encoding error, weighted by |ints|.
        "shared@int": (a @ ints, torch.ones_like(a) @ ints.abs() * e),
        "int@shared": (ints.T @ a.T, ints.abs().T @ torch.ones_like(a.T) * e),
    })


# -- linear and shape operations -------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_linear_and_shape_operations(n_parties: int, data: st.DataObject) -> None:
    """neg, sum(dim), mean(dim), .T, transpose, reshape, indexing and slicing, torch.cat, torch.stack."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), label="shape")
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = data.draw(float_arrays(shape, PRODUCT_RANGE), label="x")
    y = data.draw(float_arrays(shape, PRODUCT_RANGE), label="y")
    picks = torch.tensor([0, shape[0] - 1, 0])
    as_matrix = (shape[0], -1)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sy = share_from(session, [x, y])
        ops = {
            "-x": -sx, "x.neg()": sx.neg(), "torch.neg": torch.neg(sx),
            "sum()": sx.sum(), "sum(dim)": sx.sum(dim), "sum(dim,keepdim)": sx.sum(dim, keepdim=True),
            "torch.sum": torch.sum(sx, dim=dim),
            "mean()": sx.mean(), "mean(dim)": sx.mean(dim), "mean(dim,keepdim)": sx.mean(dim, keepdim=True),
            "torch.mean": torch.mean(sx, dim=dim),
            ".T": sx.reshape(*as_matrix).T, ".T 1-d": sx.reshape(-1).T, "t()": sx.reshape(*as_matrix).t(),
            "transpose": sx.transpose(0, -1), "torch.transpose": torch.transpose(sx, 0, dim),
            "reshape(-1)": sx.reshape(-1), "reshape(reversed)": sx.reshape(*reversed(shape)),
            "torch.reshape": torch.reshape(sx, (-1, 1)), "flatten": sx.flatten(),
            "[0]": sx[0], "[-1]": sx[-1], "[1:]": sx[1:], "[::2]": sx[::2], "[..., 0]": sx[..., 0],
            "[None]": sx[None], "[tensor]": sx[picks],
            "cat": torch.cat([sx, sy], dim=dim), "concat": torch.concat([sy, sx], dim=0),
            "stack": torch.stack([sx, sy], dim=dim), "stack(-1)": torch.stack([sx, sy, sx], dim=-1),
        }
        return {name: value.reveal() for name, value in ops.items()}

    e, u = encoding_error(), truncation_error()
    expected = {
        "-x": -x, "x.neg()": -x, "torch.neg": -x,
        "sum()": x.sum(), "sum(dim)": x.sum(dim), "sum(dim,keepdim)": x.sum(dim, keepdim=True),
        "torch.sum": x.sum(dim),
        "mean()": x.mean(), "mean(dim)": x.mean(dim), "mean(dim,keepdim)": x.mean(dim, keepdim=True),
        "torch.mean": x.mean(dim),
        ".T": x.reshape(*as_matrix).T, ".T 1-d": x.reshape(-1), "t()": x.reshape(*as_matrix).t(),
        "transpose": x.transpose(0, -1), "torch.transpose": x.transpose(0, dim),
        "reshape(-1)": x.reshape(-1), "reshape(reversed)": x.reshape(*reversed(shape)),
        "torch.reshape": x.reshape(-1, 1), "flatten": x.flatten(),
        "[0]": x[0], "[-1]": x[-1], "[1:]": x[1:], "[::2]": x[::2], "[..., 0]": x[..., 0],
        "[None]": x[None], "[tensor]": x[picks],
        "cat": torch.cat([x, y], dim=dim), "concat": torch.cat([y, x], dim=0),
        "stack": torch.stack([x, y], dim=dim), "stack(-1)": torch.stack([x, y, x], dim=-1),
    }
    bounds: dict[str, Any] = {name: e for name in expected}
    bounds.update({"sum()": x.numel() * e, "sum(dim)": shape[dim] * e, "sum(dim,keepdim)": shape[dim] * e,
                   "torch.sum": shape[dim] * e})
    bounds.update({name: e + u for name in ("mean()", "mean(dim)", "mean(dim,keepdim)", "torch.mean")})
    check_all(run_and_collect(program, n_parties), {name: (expected[name], bounds[name]) for name in expected})


# -- refusals and raw shares -----------------------------------------------------------------------------
@PARTIES
def test_unsupported_torch_functions_raise_type_error(n_parties: int) -> None:
    """torch functions without a SharedTensor implementation (erf, cumsum, sort, fft) raise TypeError; a
    SharedTensor has no truth value and no float conversion; its local share is an int64 tensor."""
    unsupported = {"erf": torch.erf, "cumsum": lambda t: torch.cumsum(t, 0), "sort": torch.sort,
                   "fft": torch.fft.fft}

    def program(session: smpc.Session) -> dict[str, Any]:
        (sx,) = share_from(session, [torch.tensor([[0.5, -1.0]], dtype=torch.float64)])
        outcome: dict[str, Any] = {"dtype": sx.local_share.dtype, "shape": sx.local_share.shape}
        for name, function in {**unsupported, "bool": bool, "float": float}.items():
            try:
                function(sx)
                outcome[name] = "no error"
            except TypeError:
                outcome[name] = "TypeError"
        return outcome

    for outcome in run_parties(program, n_parties):
        assert outcome["dtype"] == torch.int64
        assert outcome["shape"][-2:] == (1, 2)
        for name in (*unsupported, "bool", "float"):
            assert outcome[name] == "TypeError", name


# -- configurable fixed point ----------------------------------------------------------------------------
@pytest.mark.parametrize("frac_bits, int_bits", [(12, 37), (20, 21)])
@PARTIES
@settings(max_examples=5)
@given(data=st.data())
def test_sessions_with_other_frac_bits(frac_bits: int, int_bits: int, n_parties: int, data: st.DataObject) -> None:
    """A session with frac_bits=12 (int_bits=37) or 20 (int_bits=21) encodes at that resolution and range, and
    its products and matmuls meet the bounds with e = 2^-(frac_bits+1)."""
    # |x|, |y| <= 2^((int_bits-1)/2) keeps x*y, and a 2-term matmul, inside 2^int_bits.
    limit = 2.0 ** ((int_bits - 1) // 2) - 1
    shape = data.draw(SHAPES, label="shape")
    x = data.draw(float_arrays(shape, limit), label="x")
    y = data.draw(float_arrays(shape, limit), label="y")
    a = data.draw(float_arrays((3, 2), limit / 2), label="a")
    # A value that needs exactly frac_bits fractional bits, and one beyond the default range 2^15.
    fine = torch.tensor([3 * 2.0**-frac_bits, -(2.0 ** (int_bits - 1))], dtype=torch.float64)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sy, sa, sfine = share_from(session, [x, y, a, fine])
        return {"x": sx.reveal(), "x*y": (sx * sy).reveal(), "x+y": (sx + sy).reveal(),
                "a@a.T": (sa @ sa.T).reveal(), "fine": sfine.reveal(),
                "scale": torch.tensor(float(session.encoding.scale), dtype=torch.float64)}

    e = encoding_error(frac_bits)
    check_all(run_and_collect(program, n_parties, frac_bits=frac_bits, int_bits=int_bits), {
        "x": (x, e), "x*y": (x * y, product_bound(x, y, frac_bits)), "x+y": (x + y, 2 * e),
        "a@a.T": (a @ a.T, matmul_bound(a, a.T, frac_bits)), "fine": (fine, 0.0),
        "scale": (torch.tensor(2.0**frac_bits, dtype=torch.float64), 0.0),
    })


@pytest.mark.parametrize("frac_bits, int_bits", [(20, 22), (31, 1), (16, 0)])
def test_invalid_fixed_point_refused_before_start(frac_bits: int, int_bits: int) -> None:
    """run_parties refuses encodings that break int_bits + 2*frac_bits <= 61 (or the ranges) with ValueError,
    before any party runs the program."""
    started: list[int] = []

    def program(session: smpc.Session) -> None:
        started.append(session.rank)

    with pytest.raises(ValueError, match="frac_bits|int_bits"):
        run_parties(program, 2, frac_bits=frac_bits, int_bits=int_bits)
    assert started == []
