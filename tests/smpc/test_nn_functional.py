"""smpc.nn.functional (conv2d, conv1d, avg_pool2d, max_pool2d and its selection, flatten) against
torch.nn.functional on the same plain inputs, for 2 and 3 parties of the dealer family and the replicated family.

Bounds come from the docstrings through ``tests.support.nn_bounds.Approx`` (a convolution is one matmul of the
im2col columns, which torch's F.unfold gives independently of our index).  Max pooling is exact: inputs are drawn
on the fixed-point grid (multiples of 2^-16), many of them tied, and compared with zero tolerance, the gradient
routing included.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import smpc
from network.local import FRAME_OVERHEAD_BYTES
from protocols.additive.compare import ltz_bytes
from smpc.digits import load_digits
from smpc.nn import functional as SF
from tests.support.checks import DEALER_PARTIES, PARTIES, check_all, run_and_collect
from tests.support.harness import REPLICATED, run_parties, share_from
from tests.support.nn_bounds import Approx, E, U
from tests.support.strategies import float_arrays

ULP = 2.0**-16
#: Values with many ties (max pooling must pick torch's first maximum) and zero's neighbours.
TIES = (-2.0, -ULP, 0.0, ULP, 0.5, 1.0)


@st.composite
def geometry(draw: st.DrawFn, max_side: int = 6) -> dict[str, Any]:
    """A batch, channels, image size, kernel, stride and padding that torch accepts (padding at most half the
    kernel, as pooling requires; the window fits the padded image)."""
    kh, kw = draw(st.integers(1, 3), label="kh"), draw(st.integers(1, 3), label="kw")
    ph, pw = draw(st.integers(0, kh // 2), label="ph"), draw(st.integers(0, kw // 2), label="pw")
    return {
        "n": draw(st.integers(1, 2), label="n"), "c": draw(st.integers(1, 3), label="c"),
        "h": draw(st.integers(max(1, kh - 2 * ph), max_side), label="h"),
        "w": draw(st.integers(max(1, kw - 2 * pw), max_side), label="w"),
        "kernel": (kh, kw), "stride": (draw(st.integers(1, 2), label="sh"), draw(st.integers(1, 2), label="sw")),
        "padding": (ph, pw),
    }


def grid_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[torch.Tensor]:
    """float64 tensors of exactly encodable values in [-4, 4], tie-heavy or continuous."""
    grid = st.integers(-4 * 2**16, 4 * 2**16).map(lambda k: k * ULP)
    elements = st.one_of(st.sampled_from(TIES), grid)
    return st.lists(elements, min_size=_count(shape), max_size=_count(shape)).map(
        lambda values: torch.tensor(values, dtype=torch.float64).reshape(shape))


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for side in shape:
        total *= side
    return total


def conv_bound(x: torch.Tensor, weight: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], out_shape: torch.Size, bias: bool) -> torch.Tensor:
    """conv2d's stated bound: one matmul of encoded im2col columns (F.unfold) with the encoded weight, + e for
    an encoded bias."""
    cols = F.unfold(x, kernel, padding=padding, stride=stride).transpose(1, 2)  # (N, L, C K)
    product = Approx.encoded(cols) @ Approx.encoded(weight.reshape(weight.shape[0], -1).T)  # (N, L, O)
    bound = product.bound.transpose(1, 2).reshape(out_shape)
    return bound + E if bias else bound


# -- convolutions ----------------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_conv2d_matches_torch(n_parties: int, data: st.DataObject) -> None:
    """conv2d with a shared weight and a shared bias, and with a public weight and no bias, within the bound of
    one matmul of the im2col columns; stride and padding drawn per dimension."""
    g = data.draw(geometry(), label="geometry")
    out_channels = data.draw(st.integers(1, 3), label="out_channels")
    x = data.draw(float_arrays((g["n"], g["c"], g["h"], g["w"]), 4.0), label="x")
    weight = data.draw(float_arrays((out_channels, g["c"], *g["kernel"]), 2.0), label="weight")
    bias = data.draw(float_arrays((out_channels,), 2.0), label="bias")
    options = {"stride": g["stride"], "padding": g["padding"]}

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sw, sb = share_from(session, [x, weight, bias])
        return {"shared": SF.conv2d(sx, sw, sb, **options).reveal(),
                "public weight": SF.conv2d(sx, weight, None, **options).reveal()}

    shared, public = F.conv2d(x, weight, bias, **options), F.conv2d(x, weight, None, **options)
    check_all(run_and_collect(program, n_parties), {
        "shared": (shared, conv_bound(x, weight, g["kernel"], g["stride"], g["padding"], shared.shape, True)),
        "public weight": (public, conv_bound(x, weight, g["kernel"], g["stride"], g["padding"], public.shape, False)),
    })


@PARTIES
@given(data=st.data())
def test_conv1d_matches_torch(n_parties: int, data: st.DataObject) -> None:
    """conv1d (as conv2d on 1 x L images) with shared weight and bias, stride and padding drawn."""
    n, c, o = (data.draw(st.integers(1, 3), label=name) for name in ("n", "c", "o"))
    k = data.draw(st.integers(1, 3), label="k")
    padding = data.draw(st.integers(0, 1), label="padding")
    length = data.draw(st.integers(max(1, k - 2 * padding), 7), label="length")
    stride = data.draw(st.integers(1, 2), label="stride")
    x = data.draw(float_arrays((n, c, length), 4.0), label="x")
    weight = data.draw(float_arrays((o, c, k), 2.0), label="weight")
    bias = data.draw(float_arrays((o,), 2.0), label="bias")

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sw, sb = share_from(session, [x, weight, bias])
        return {"conv1d": SF.conv1d(sx, sw, sb, stride=stride, padding=padding).reveal()}

    want = F.conv1d(x, weight, bias, stride=stride, padding=padding)
    bound = conv_bound(x.unsqueeze(2), weight.unsqueeze(2), (1, k), (1, stride), (0, padding),
                       want.unsqueeze(2).shape, True).squeeze(2)
    check_all(run_and_collect(program, n_parties), {"conv1d": (want, bound)})


# -- pooling and flatten ---------------------------------------------------------------------------------
@PARTIES
@given(data=st.data())
def test_avg_pool2d_and_flatten_match_torch(n_parties: int, data: st.DataObject) -> None:
    """avg_pool2d (zero padding counted in the divisor, as torch's default) within e + u (the window sum is
    exact, the division by the public K adds less than u); flatten exactly as nn.Flatten."""
    g = data.draw(geometry(), label="geometry")
    x = data.draw(float_arrays((g["n"], g["c"], g["h"], g["w"]), 4.0), label="x")
    options = {"kernel_size": g["kernel"], "stride": g["stride"], "padding": g["padding"]}

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [x])
        return {"avg": SF.avg_pool2d(sx, **options).reveal(), "flatten": SF.flatten(sx).reveal()}

    check_all(run_and_collect(program, n_parties), {
        "avg": (F.avg_pool2d(x, **options), E + U),
        "flatten": (torch.nn.Flatten()(x), E),
    })


@PARTIES
@given(data=st.data())
def test_max_pool2d_and_its_routing_are_exact(n_parties: int, data: st.DataObject) -> None:
    """max_pool2d equals torch's on grid values (ties included, zero tolerance), with the default stride and
    with a drawn one (overlapping windows); the selection routes an output gradient exactly as torch's backward
    does (first maximum of each window, overlapping windows adding up)."""
    g = data.draw(geometry(), label="geometry")
    stride = data.draw(st.sampled_from([None, g["stride"]]), label="stride")
    x = data.draw(grid_arrays((g["n"], g["c"], g["h"], g["w"])), label="x")
    options = {"kernel_size": g["kernel"], "stride": stride, "padding": g["padding"]}
    plain = x.clone().requires_grad_()
    pooled = F.max_pool2d(plain, **options)
    grad = data.draw(grid_arrays(tuple(pooled.shape)), label="grad")
    pooled.backward(grad)

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        sx, sgrad = share_from(session, [x, grad])
        values, selection = SF.max_pool2d_with_selection(sx, **options)
        return {"max": values.reveal(), "plain max": SF.max_pool2d(sx, **options).reveal(),
                "route": selection.route(sgrad).reveal()}

    assert plain.grad is not None
    expected = {"max": (pooled.detach(), 0.0), "plain max": (pooled.detach(), 0.0), "route": (plain.grad, 0.0)}
    check_all(run_and_collect(program, n_parties), expected)


# -- the digit CNN's forward pass -----------------------------------------------------------------------
@PARTIES
def test_the_digit_cnn_forward_on_shares_matches_torch(n_parties: int) -> None:
    """Conv2d(1, 8, 3, padding 1), ReLU, MaxPool2d(2), Flatten, Linear(128, 10) on embedded digit images shared
    by party 0, with the weights shared by party 1 (private inference): the logits lie within the bound that
    ``Approx`` carries through each step (max pooling passes on the largest bound of its window, as it outputs
    exactly one of the window's values), and the predicted digits agree."""
    images = torch.from_numpy(load_digits().images[:6]).to(torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        conv, linear = torch.nn.Conv2d(1, 8, 3, padding=1).double(), torch.nn.Linear(128, 10).double()
    weights = [conv.weight.detach(), conv.bias.detach(), linear.weight.detach(), linear.bias.detach()]

    def program(session: smpc.Session) -> dict[str, torch.Tensor]:
        (sx,) = share_from(session, [images])
        cw, cb, lw, lb = (session.share(w if session.rank == 1 else None, owner=1) for w in weights)
        hidden = SF.max_pool2d(SF.conv2d(sx, cw, cb, padding=1).relu(), 2)
        return {"logits": (SF.flatten(hidden) @ lw.t() + lb).reveal()}

    with torch.no_grad():
        convolved = conv(images)
        first = Approx(convolved, conv_bound(images, conv.weight.detach(), (3, 3), (1, 1), (1, 1),
                                             convolved.shape, True)).relu()
        pooled = Approx(F.max_pool2d(first.value, 2), F.max_pool2d(first.bound, 2))
        flat = Approx(pooled.value.flatten(1), pooled.bound.flatten(1))
        logits = flat @ Approx.encoded(linear.weight).T + Approx.encoded(linear.bias)
    got = run_and_collect(program, n_parties)
    check_all(got, {"logits": (logits.value, logits.bound)})
    assert torch.equal(got["logits"].argmax(1), logits.value.argmax(1))


# -- costs and refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_parties", [3, REPLICATED], ids=["3-dealer", "3-replicated"])
def test_rounds_as_documented(n_parties: int) -> None:
    """conv2d with a shared weight 2 rounds; avg_pool2d one truncation (1 dealer family, 2 replicated);
    max_pool2d over 2x2 and 3x3 windows 9 (dealer) or 5 (replicated, at most 1,024 pairs) per tournament level
    (2 and 4 levels);
    routing 1 per level; flatten and conv2d with an integer weight 0."""
    x = torch.linspace(-3.0, 3.0, 2 * 2 * 6 * 6, dtype=torch.float64).reshape(2, 2, 6, 6)
    weight = torch.linspace(-1.0, 1.0, 3 * 2 * 3 * 3, dtype=torch.float64).reshape(3, 2, 3, 3)

    def program(session: smpc.Session) -> dict[str, int]:
        sx, sw = share_from(session, [x, weight])
        calls = {
            "conv": lambda: SF.conv2d(sx, sw, None, padding=1),
            "conv integer": lambda: SF.conv2d(sx, torch.ones(3, 2, 3, 3, dtype=torch.int64)),
            "avg": lambda: SF.avg_pool2d(sx, 2), "max 2x2": lambda: SF.max_pool2d(sx, 2),
            "max 3x3": lambda: SF.max_pool2d(sx, 3), "flatten": lambda: SF.flatten(sx),
        }
        rounds = {}
        for name, call in calls.items():
            before = session.stats.rounds
            call()
            rounds[name] = session.stats.rounds - before
        _, selection = SF.max_pool2d_with_selection(sx, 3)
        before = session.stats.rounds
        selection.route(session.public(torch.ones(2, 2, 2, 2)))
        rounds["route 3x3"] = session.stats.rounds - before
        return rounds

    replicated = getattr(n_parties, "protocol", "dealer") == "replicated"
    level, truncation = (5, 2) if replicated else (9, 1)
    expected = {"conv": 2, "conv integer": 0, "avg": truncation, "max 2x2": 2 * level, "max 3x3": 4 * level,
                "flatten": 0, "route 3x3": 4}
    for rank, rounds in enumerate(run_parties(program, n_parties)):
        assert rounds == expected, rank


@DEALER_PARTIES
def test_payload_bytes_as_documented(n_parties: int) -> None:
    """Dealer family, per other party, from the counters less 114 header bytes per message: conv2d with a
    shared weight 8 (N L C K + O C K + N L O), with a public weight 8 N L O; avg_pool2d 8 N C L; max_pool2d
    over 2x2 windows ltz_bytes(P) + 16 P per level of P pairs; routing 16 per pair and level."""
    n, c, side, o = 2, 3, 6, 4
    x = torch.linspace(-3.0, 3.0, n * c * side * side, dtype=torch.float64).reshape(n, c, side, side)
    weight = torch.linspace(-1.0, 1.0, o * c * 9, dtype=torch.float64).reshape(o, c, 3, 3)

    def program(session: smpc.Session) -> dict[str, tuple[int, int]]:
        sx, sw = share_from(session, [x, weight])
        grad = session.public(torch.ones(n, c, 3, 3))
        selection: list[SF.MaxPoolSelection] = []
        calls = {
            "conv": lambda: SF.conv2d(sx, sw, None, padding=1),
            "conv public": lambda: SF.conv2d(sx, weight, None, padding=1),
            "avg": lambda: SF.avg_pool2d(sx, 2),
            "max": lambda: selection.append(SF.max_pool2d_with_selection(sx, 2)[1]),
            "route": lambda: selection[0].route(grad),
        }
        measured = {}
        for name, call in calls.items():
            session.stats.reset()
            call()
            stats = session.stats.as_dict()
            measured[name] = (stats["bytes_sent"] - FRAME_OVERHEAD_BYTES * stats["messages"], stats["messages"])
        return measured

    outputs, columns, pooled = n * side * side, c * 9, n * c * 9
    pairs = [2 * pooled, pooled]  # 4 candidates per window: 2 pairs, then 1
    expected = {
        "conv": 8 * (outputs * columns + o * columns + outputs * o), "conv public": 8 * outputs * o,
        "avg": 8 * pooled, "max": sum(ltz_bytes(p) + 16 * p for p in pairs), "route": 16 * sum(pairs),
    }
    for rank, measured in enumerate(run_parties(program, n_parties)):
        payloads = {name: payload for name, (payload, _) in measured.items()}
        assert payloads == {name: value * (n_parties - 1) for name, value in expected.items()}, rank


def test_wrong_shapes_and_windows_are_refused_in_one_line() -> None:
    """A weight of the wrong channels, an unbatched input, padding over half the kernel and a window larger
    than the padded image are ValueErrors naming the problem; a public input is a TypeError."""

    def program(session: smpc.Session) -> list[str]:
        sx = session.public(torch.zeros(1, 2, 4, 4))
        attempts = [
            lambda: SF.conv2d(sx, torch.zeros(3, 1, 3, 3)),
            lambda: SF.conv2d(sx[0], torch.zeros(3, 2, 3, 3)),
            lambda: SF.max_pool2d(sx, 2, padding=2),
            lambda: SF.avg_pool2d(sx, 5),
            lambda: SF.conv1d(sx[:, :, 0], torch.zeros(1, 2, 3), stride=(1, 2)),  # type: ignore[arg-type]
        ]
        messages = []
        for attempt in attempts:
            with pytest.raises(ValueError) as caught:
                attempt()
            messages.append(str(caught.value))
        with pytest.raises(TypeError, match="SharedTensor input"):
            SF.max_pool2d(torch.zeros(1, 1, 2, 2), 2)  # type: ignore[arg-type]
        return messages

    messages = run_parties(program, 2)[0]
    for message, word in zip(messages, ["weight", "4 dimensions", "half the kernel", "does not fit", "int stride"]):
        assert word in message and "\n" not in message, message
