"""Forward operations of convolutional networks on SharedTensors, as ``torch.nn.functional`` computes them:
``conv2d``, ``conv1d``, ``avg_pool2d``, ``max_pool2d`` (with ``max_pool2d_with_selection`` keeping the
comparison bits for a backward pass) and ``flatten``.

Everything structural is a public index gather of every party's shares (local, no communication): windows are
read through one index tensor (``window_index``) into the input, flattened per image and followed by one zero
slot, so padding costs nothing either.  What remains is one ring matmul (convolution), one public division
(average pooling) or a tournament of secure comparisons (max pooling).

Cost notation: N batch, C input channels, O output channels, L = out_h * out_w output positions, K = kh * kw
window elements, n parties.  Error bounds are per output element, for encoded inputs (e = 2^-17 encoding
error, u = 2^-16 one truncation).  Only SharedTensor's public API is used.

Autograd (``smpc.autograd``): conv2d, conv1d, avg_pool2d and flatten are differentiable through the SharedTensor
operations they are made of (the gather is integer indexing and cat, whose backward adds each window
element's gradient back into its input position; then matmul, reshape, permute, sum, division); max_pool2d
records one node of its own whose backward is ``MaxPoolSelection.route``.  tests/smpc/test_nn_autograd.py
checks conv2d, avg_pool2d and max_pool2d against torch autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from smpc import autograd
from smpc.tensor import SharedTensor, cat, where

Pair = int | tuple[int, int]


def _pair(value: Pair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, not {value!r}")
    return pair[0], pair[1]


def _check_window(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> None:
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"kernel {kernel} and stride {stride} must be positive and padding {padding} not negative")


def window_index(channels: int, height: int, width: int, kernel: Pair, stride: Pair = 1, padding: Pair = 0
                 ) -> tuple[torch.Tensor, int, int]:
    """The public im2col index: an int64 tensor (L, channels * K) of positions in an image flattened to
    channels * height * width values followed by ONE zero (or padding) slot at position channels * height *
    width, which every padded position reads.  Row l is output position l (row-major); columns run over
    (channel, kernel row, kernel column), the order of ``weight.reshape(O, -1)``.  Returns (index, out_h, out_w).
    """
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel, "kernel_size"), _pair(stride, "stride"), _pair(padding, "padding")
    _check_window((kh, kw), (sh, sw), (ph, pw))
    out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kh}x{kw} window does not fit a {height}x{width} input with padding ({ph}, {pw})")
    slot = channels * height * width
    positions = torch.arange(slot, dtype=torch.int64).reshape(channels, height, width)
    padded = torch.full((channels, height + 2 * ph, width + 2 * pw), slot, dtype=torch.int64)
    padded[:, ph : ph + height, pw : pw + width] = positions
    windows = padded.unfold(1, kh, sh).unfold(2, kw, sw)  # (C, out_h, out_w, kh, kw)
    return windows.permute(1, 2, 0, 3, 4).reshape(out_h * out_w, channels * kh * kw), out_h, out_w


def _gather_windows(x: SharedTensor, index: torch.Tensor, fill: float = 0.0) -> SharedTensor:
    """x (B, D) -> (B, *index.shape): x's values at ``index``, position D reading the public ``fill``. Local."""
    slot = x.session.public(torch.full((x.shape[0], 1), fill, dtype=torch.float64))
    return cat([x, slot], dim=1)[:, index]


def _check_input(x: Any, dims: int, name: str) -> SharedTensor:
    if not isinstance(x, SharedTensor):
        raise TypeError(f"{name} takes a SharedTensor input (a public input needs no MPC: use torch)")
    if x.dim() != dims:
        raise ValueError(f"{name} expects a batched input of {dims} dimensions, got shape {tuple(x.shape)}")
    return x


def conv2d(x: SharedTensor, weight: SharedTensor | torch.Tensor, bias: SharedTensor | torch.Tensor | None = None,
           stride: Pair = 1, padding: Pair = 0) -> SharedTensor:
    """torch.nn.functional.conv2d of a shared (N, C, H, W) input with a shared or public (O, C, kh, kw) weight
    and an optional shared or public (O,) bias (no dilation, no groups).

    Steps:
      1. im2col: gather the windows through the public ``window_index`` (padding reads a public zero slot):
         cols (N L, C K).  Local.
      2. ONE ring matmul cols @ weight.reshape(O, C K)^T: (N L, O).  Shared weight: the family's matmul with
         its truncation; public float weight: local products, then one truncation; public integer weight: exact.
      3. Reshape to (N, O, out_h, out_w) and add the bias (local).
    Rounds: shared weight 2 (dealer family: matmul 1 + truncation 1; replicated: reshare fused with the
    truncation, 2); public float weight: one truncation (1 dealer family, 2 replicated); integer weight 0.
    Payload bytes per party (dealer family): shared weight 8 (n-1) (N L C K + O C K) to open the masked
    operands plus 8 (n-1) N L O for the truncation; public float weight 8 (n-1) N L O.  Replicated family:
    about 16 N L O per party either way (``fused_truncate``; the operands never travel).  Every message adds
    a fixed frame header.
    Error: as one matmul with inner dimension C K: exact before the truncation, which adds less than u; with
    encoded inputs, each output is within sum_j (|x_j| e_w + |w_j| e_x + e_x e_w) + u (+ e for an encoded
    bias) of the real value, e_x, e_w the inputs' own errors (e for freshly encoded ones).
    """
    x = _check_input(x, 4, "conv2d")
    n, channels, height, width = x.shape
    if weight.dim() != 4 or weight.shape[1] != channels:
        raise ValueError(f"conv2d weight must be (out, {channels}, kh, kw) for {channels} input channels, "
                         f"got {tuple(weight.shape)}")
    out_channels, kernel = weight.shape[0], (weight.shape[2], weight.shape[3])
    index, out_h, out_w = window_index(channels, height, width, kernel, stride, padding)
    cols = _gather_windows(x.reshape(n, -1), index).reshape(n * out_h * out_w, index.shape[1])
    out = (cols @ weight.reshape(out_channels, -1).t()).reshape(n, out_h, out_w, out_channels).permute(0, 3, 1, 2)
    return out if bias is None else out + bias.reshape(1, out_channels, 1, 1)


def conv1d(x: SharedTensor, weight: SharedTensor | torch.Tensor, bias: SharedTensor | torch.Tensor | None = None,
           stride: int = 1, padding: int = 0) -> SharedTensor:
    """torch.nn.functional.conv1d of a shared (N, C, L_in) input with a shared or public (O, C, k) weight: the
    input as (N, C, 1, L_in) images and the kernel as (O, C, 1, k) through ``conv2d`` (stride (1, stride),
    padding (0, padding)).  Steps, rounds, bytes and error: those of ``conv2d`` with K = k, L = L_out."""
    x = _check_input(x, 3, "conv1d")
    if weight.dim() != 3:
        raise ValueError(f"conv1d weight must be (out, in, k), got {tuple(weight.shape)}")
    if not isinstance(stride, int) or not isinstance(padding, int):
        raise ValueError("conv1d takes an int stride and an int padding")
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, stride), (0, padding))
    return out.squeeze(2)


def _pool_geometry(x: SharedTensor, kernel_size: Pair, stride: Pair | None, padding: Pair, name: str
                   ) -> tuple[torch.Tensor, int, int]:
    x = _check_input(x, 4, name)
    kernel = _pair(kernel_size, "kernel_size")
    pad = _pair(padding, "padding")
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"{name}: padding {pad} must be at most half the kernel {kernel}")
    return window_index(1, x.shape[2], x.shape[3], kernel, kernel if stride is None else stride, pad)


def avg_pool2d(x: SharedTensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0) -> SharedTensor:
    """torch.nn.functional.avg_pool2d of a shared (N, C, H, W) input (stride defaults to the kernel; padded
    positions count as zeros in the divisor, torch's default count_include_pad=True).

    Steps:
      1. Gather every window of every channel plane (public index, padding reads a public zero): (N C, L, K).
      2. Sum each window (local, exact).
      3. Divide by the public K: ``SharedTensor.__truediv__`` by an integer (one exact division by K with the
         dealer truncation; with the other truncation methods a product with the public float 1/K and one
         truncation).
    Rounds: 1 in the dealer family, 2 in the replicated one (one truncation).  Payload bytes per party: one
    truncation of N C L values (dealer family: 8 (n-1) N C L).
    Error: dividing by K exactly adds less than u (the window sum is exact): within mean(e_x) + u of the
    real mean; through 1/K the encoding of 1/K adds e |sum| as well.
    """
    index, out_h, out_w = _pool_geometry(x, kernel_size, stride, padding, "avg_pool2d")
    n, channels, height, width = x.shape
    sums = _gather_windows(x.reshape(n * channels, height * width), index).sum(-1)
    return (sums / int(index.shape[1])).reshape(n, channels, out_h, out_w)


@dataclass(frozen=True)
class MaxPoolSelection:
    """What ``max_pool2d_with_selection`` keeps for a backward pass: the public window index, the input shape,
    and per tournament level the shared comparison bits [hi > lo] (0/1 SharedTensors straight from the
    comparison, so routing through them costs one product without truncation).  Nothing here was opened."""

    index: torch.Tensor
    input_shape: tuple[int, int, int, int]
    levels: tuple[SharedTensor, ...]

    def route(self, grad: SharedTensor) -> SharedTensor:
        """The gradient with respect to the pooled input of ``grad`` (the output's gradient, (N, C, out_h,
        out_w)): each output's gradient goes to the (first) maximum of its window, as torch's backward does;
        overlapping windows add up.

        Steps:
          1. Down the tournament, level by level from the last: the winner's gradient g goes to hi as
             where([hi > lo], g, 0) (one bit product), to lo as g minus that; an odd element keeps its own.
          2. col2im: the (N C, L K) window gradients times a public 0/1 integer matrix (L K, H W + 1) that adds
             each window element into its input position (local, exact); the padding slot is dropped.
        Rounds: ceil(log2 K) (one per level; 1 round each, no truncation).  Payload bytes per party (dealer
        family): 16 (n-1) per routed pair and level.  Error: none beyond the incoming gradient's own (exact routing).
        """
        n, channels, height, width = self.input_shape
        window = self.index.shape[1]
        g = grad.reshape(1, n * channels, self.index.shape[0])
        counts = _tournament_counts(window)
        for count, bits in zip(reversed(counts), reversed(self.levels)):
            pairs = count // 2
            to_hi = where(bits, g[:pairs], 0.0)
            routed = cat([(g[:pairs] - to_hi).unsqueeze(1), to_hi.unsqueeze(1)], dim=1).reshape(
                2 * pairs, n * channels, self.index.shape[0])
            g = cat([routed, g[pairs : pairs + 1]]) if count % 2 else routed
        windows = g.permute(1, 2, 0).reshape(n * channels, -1)
        scatter = torch.zeros(self.index.numel(), height * width + 1, dtype=torch.int64)
        scatter[torch.arange(self.index.numel()), self.index.reshape(-1)] = 1
        return (windows @ scatter)[:, : height * width].reshape(n, channels, height, width)


def _tournament_counts(window: int) -> list[int]:
    """How many candidates enter each level of a pairwise tournament over ``window`` elements."""
    counts = []
    while window > 1:
        counts.append(window)
        window = window // 2 + window % 2
    return counts


def max_pool2d_with_selection(x: SharedTensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0
                              ) -> tuple[SharedTensor, MaxPoolSelection]:
    """torch.nn.functional.max_pool2d of a shared (N, C, H, W) input (stride defaults to the kernel; padding
    at most half the kernel, read as the most negative value the encoding holds, -(2^int_bits - 1), so every
    input must lie above it), with the comparison bits kept for ``MaxPoolSelection.route``.

    Steps:
      1. Gather the windows (public index, local): K candidates per output, (K, N C, L).
      2. A pairwise tournament, ceil(log2 K) levels: each level pairs neighbours (lo, hi) and computes
         [hi > lo] for all pairs in ONE secure comparison (``SharedTensor.__gt__``), then keeps
         where([hi > lo], hi, lo) in ONE bit product; an odd candidate passes unchanged.  hi wins only if
         strictly greater, so the first maximum of a window (row-major) wins ties, as in torch.
    Rounds: 9 ceil(log2 K) in the dealer family (comparison 8 + bit product 1 per level), 10 ceil(log2 K) in
    the replicated one (its comparison runs in the helper sub-session and converts back, 9), 5 per level there
    while a level compares at most 1,024 pairs (the helper's comparison, 3 rounds); 2x2 windows: 2 levels.
    Payload bytes per party (dealer family): per level with P pairs, (ltz_bytes(P) + 16 P) (n-1) (one
    comparison, ``protocols.additive.compare.ltz_bytes``: about 32.5 bytes per pair; one bit product).
    Error: none (comparisons and selections are exact): each output is exactly one of its window's inputs.
    Autograd: when x requires a gradient, the result records a node whose backward is ``selection.route``
    (ceil(log2 K) rounds, exact), so ``max_pool2d`` is differentiable as torch's; the tournament itself runs
    under ``no_grad`` and records nothing.
    """
    index, out_h, out_w = _pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    with autograd.no_grad():
        values, selection = _tournament(x, index)
    pooled = values.reshape(x.shape[0], x.shape[1], out_h, out_w)
    return autograd.record(pooled, [x], _route_backward, selection, name="MaxPool2d"), selection


def _route_backward(grad: SharedTensor, needs: tuple[bool, ...], selection: MaxPoolSelection
                    ) -> tuple[SharedTensor]:
    """max_pool2d's backward for ``smpc.autograd``: ``MaxPoolSelection.route`` of the output's gradient."""
    return (selection.route(grad),)


def _tournament(x: SharedTensor, index: torch.Tensor) -> tuple[SharedTensor, MaxPoolSelection]:
    """The windows' maxima (N C, L) and the comparison bits (steps 1-2 of ``max_pool2d_with_selection``)."""
    n, channels, height, width = x.shape
    lowest = -(2.0 ** x.session.encoding.int_bits - 1.0)
    values = _gather_windows(x.reshape(n * channels, height * width), index, lowest).permute(2, 0, 1)
    levels = []
    while values.shape[0] > 1:
        pairs = values.shape[0] // 2
        lo, hi = values[0 : 2 * pairs : 2], values[1 : 2 * pairs : 2]
        hi_wins = hi > lo
        levels.append(hi_wins)
        winners = where(hi_wins, hi, lo)
        values = cat([winners, values[-1:]]) if values.shape[0] % 2 else winners
    return values[0], MaxPoolSelection(index, (n, channels, height, width), tuple(levels))


def max_pool2d(x: SharedTensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0) -> SharedTensor:
    """torch.nn.functional.max_pool2d: ``max_pool2d_with_selection`` without the selection (same steps, rounds,
    bytes; exact)."""
    return max_pool2d_with_selection(x, kernel_size, stride, padding)[0]


def flatten(x: SharedTensor, start_dim: int = 1, end_dim: int = -1) -> SharedTensor:
    """torch.flatten with torch.nn.Flatten's default start_dim=1 (keeps the batch).  Local: no rounds, no bytes,
    exact."""
    return x.flatten(start_dim, end_dim)


__all__ = ["MaxPoolSelection", "avg_pool2d", "conv1d", "conv2d", "flatten", "max_pool2d",
           "max_pool2d_with_selection", "window_index"]
