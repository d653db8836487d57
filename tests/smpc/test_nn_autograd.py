"""Gradients of smpc.nn.functional's conv2d, avg_pool2d and max_pool2d under smpc.autograd, against torch autograd, for
both protocol families (small sizes; ``tests.support.grad_check`` runs the cases on shares).

Bounds (e = 2^-17 encoding of an input or of g, u = 2^-16 one truncation):
  * conv2d(x, w, b) is one matmul of the gathered windows with w (plus b): d/dw = cols^T g, one truncation
    after a sum over N L terms (+ u); d/dx = g w, one truncation per window position, then summed into each
    input position over the windows that read it (+ u per window, ``bilinear_bound`` with inner O); the
    encoding errors of g, x, w through the same sums; d/db = sum of g over N L: exact, its e's only.
  * avg_pool2d: g / K per window (u for the division, e |g| more through an encoded 1/K), summed per input.
  * max_pool2d: the routing is exact, so each input's gradient is the upstream g of the window it won (e), or
    0; inputs are distinct so that no tie makes the shared tournament and torch pick differently.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from smpc.nn import functional as SF
from tests.support.grad_check import Bound, Case, bilinear_bound, check_gradients, torch_grads, with_seeds
from tests.support.nn_bounds import E, U
from tests.support.strategies import float_arrays

FAMILIES = pytest.mark.parametrize("protocol", ["dealer", "replicated"])


def conv_bound(padding: int, out_channels: int) -> Bound:
    """The bound of conv2d(x, w, b) with the given padding (see the module docstring)."""

    def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, padding=padding)

    pair = bilinear_bound(conv, out_channels, 1 << 40)  # right: the U term is added once below

    def bound(xs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
        x, w, b = xs
        left, right = pair([x, w], g)
        bias = torch_grads(lambda p: F.conv2d(x, w, p, padding=padding), [b], torch.full_like(g, E))[0]
        return [left, right + U, bias.abs()]

    return bound


def avg_bound(kernel: int) -> Bound:
    """avg_pool2d: g / K, one division by the public K per output (exact division plus u, or the encoded 1/K:
    e |g| more), summed into each input over the windows that read it."""

    def avg(p: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(p, kernel)

    def bound(xs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
        windows = torch_grads(avg, xs, torch.ones_like(g))[0] * kernel * kernel  # windows reading each input
        per_window = E / kernel**2 + E * float(g.abs().max()) + U
        return [windows * per_window]

    return bound


def distinct(data: st.DataObject, shape: tuple[int, ...], label: str) -> torch.Tensor:
    """Distinct multiples of 1/16 in [-4, 4] (no ties inside a pooling window)."""
    values = hnp.arrays("int64", shape, elements=st.integers(-64, 64), unique=True)
    return torch.from_numpy(data.draw(values, label=label)).to(torch.float64) / 16


def cases(data: st.DataObject) -> list[Case]:
    n, channels, out_channels = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    side, kernel, padding = data.draw(st.integers(3, 5)), data.draw(st.integers(1, 3)), data.draw(st.integers(0, 1))
    x = data.draw(float_arrays((n, channels, side, side), 4.0), label="x")
    w = data.draw(float_arrays((out_channels, channels, kernel, kernel), 2.0), label="w")
    b = data.draw(float_arrays((out_channels,), 2.0), label="b")
    pooled = distinct(data, (n, channels, 4, 4 + data.draw(st.integers(0, 1))), "pooled")
    return [
        Case("conv2d", [x, w, b], lambda p, q, r: SF.conv2d(p, q, r, padding=padding),
             conv_bound(padding, out_channels),
             reference=lambda p, q, r: F.conv2d(p, q, r, padding=padding)),
        Case("avg_pool2d 2x2", [pooled], lambda p: SF.avg_pool2d(p, 2), avg_bound(2),
             reference=lambda p: F.avg_pool2d(p, 2)),
        Case("max_pool2d 2x2", [pooled], lambda p: SF.max_pool2d(p, 2), reference=lambda p: F.max_pool2d(p, 2)),
        Case("max_pool2d 3x3 stride 1 padding 1", [pooled],
             lambda p: SF.max_pool2d(p, 3, stride=1, padding=1),
             reference=lambda p: F.max_pool2d(p, 3, stride=1, padding=1)),
    ]


@FAMILIES
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_gradients_of_conv2d_and_pooling(protocol: str, data: st.DataObject) -> None:
    check_gradients(with_seeds(data, cases(data)), protocol)
