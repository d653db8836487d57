"""The clipped, noised gradient step of logistic regression on shares (DP-SGD, Abadi et al. 2016): per-row
clipping limits that hold for every admitted row, and the step itself.  The accountant is ``accountant``.
"""

from __future__ import annotations

import math

from protocols.approx.sqrt import INV_SQRT_ERROR
from smpc.privacy.noise import joint_gaussian
from smpc.session import Session
from smpc.tensor import SharedTensor, stack

#: inv_sqrt's accurate domain: relative error bound R on (0, 2^INV_SQRT_DOMAIN_BITS].
_INV_SQRT_DOMAIN_BITS = 10


def row_limits(x: SharedTensor, clip: float, max_square_norm: float) -> SharedTensor:
    """t_i with t_i sqrt(|x_i|^2 + 1) <= clip for every row x_i of shared x, and t_i close to that bound.

    ``max_square_norm`` is a public bound B >= |x_i|^2 for every row, which the caller guarantees (the loan job
    clips every feature to its declared range before sharing, so B = number of numeric columns + number of
    categorical columns).  Every row the bound admits gets a limit that holds, whatever its value.

    Steps:
      1. k = the smallest even shift with (B + 1) / 2^k <= 2^10, inverse_sqrt's accurate domain.
      2. s_i = |x_i|^2 / 2^k + 2^-k: the squares as exact ring products, summed, then ONE truncation by
         2^(f + k) (error below one unit, where per-element truncations would err by up to D units).
      3. t_i = inv_sqrt(s_i) * clip 2^(-k/2) S, with S < 1 the safety factor below.
    Rounds: 1 + 1 + 15 + 1 = 18.  Bytes: those of the product, the truncation, inv_sqrt and a public product.
    Error: inv_sqrt(s) <= (1 + R) / sqrt(s) + A u (``INV_SQRT_ERROR``: R = 1.2e-4, A = 1.5 units u = 2^-f) and
    the truncation errs below one unit, so t_i sqrt(|x_i|^2 + 1) is at most
        (1 + R)(clip S + u 2^(k/2 - 1)) / sqrt(1 - u 2^k) + u (A (clip 2^(-k/2) + u) + 1) sqrt(B + 1),
    and S is the largest factor that makes this <= clip (about 1 - 3e-4 for the loan job's B = 20).  A bound B
    that leaves S below 1/2 (rows too long for the clip at this precision) is refused with a ValueError.
    """
    session = x.session
    encoding = session.encoding
    if not clip > 0 or not max_square_norm >= 0:
        raise ValueError("the clip must be positive and the squared-norm bound non-negative")
    if max_square_norm + 1 >= encoding.max_abs:
        raise ValueError(f"rows of squared norm up to {max_square_norm:g} do not fit the fixed-point range "
                         f"(|v| < {encoding.max_abs:g}); scale the features down")
    shift = 0
    while (max_square_norm + 1) / 2.0**shift > 2.0**_INV_SQRT_DOMAIN_BITS:
        shift += 2
    safety = limit_safety(clip, max_square_norm, shift, encoding.frac_bits)
    squares = x.mul_unscaled(x).sum(-1)
    norms = squares.rescale(1 << (encoding.frac_bits + shift)) + 2.0**-shift
    return norms.rsqrt() * (clip * 2.0 ** (-shift / 2) * safety)


def limit_safety(clip: float, max_square_norm: float, shift: int, frac_bits: int) -> float:
    """The safety factor S of ``row_limits`` (see its docstring for the bound it solves)."""
    relative, absolute_units = INV_SQRT_ERROR
    unit = 2.0**-frac_bits
    additive = unit * (absolute_units * (clip * 2.0 ** (-shift / 2) + unit) + 1.0) * math.sqrt(max_square_norm + 1)
    room = (clip - additive) * math.sqrt(1.0 - unit * 2.0**shift) / (1.0 + relative) - unit * 2.0 ** (shift / 2 - 1)
    safety = room / clip
    if safety < 0.5:
        raise ValueError(f"a clip of {clip:g} is too small for rows of squared norm up to {max_square_norm:g} at "
                         f"{frac_bits} fractional bits; raise the clip or scale the features down")
    return safety


def clipped_noisy_gradient(session: Session, x: SharedTensor, error: SharedTensor, limit: SharedTensor,
                           clip: float, noise_multiplier: float, *, sample: SharedTensor | None = None,
                           denominator: float | None = None) -> tuple[SharedTensor, SharedTensor]:
    """DP-SGD gradient of logistic regression on shares: (weight gradient, bias gradient).

    For example i the BCE gradient is e_i [x_i, 1] with e_i = p_i - y_i, of norm |e_i| sqrt(|x_i|^2 + 1), so
    clipping it to ``clip`` is clamping e_i to +-t_i with t_i from ``row_limits``.  Steps:
      1. e' = e - relu(e - t) + relu(-t - e) (two ReLUs, batched: 9 rounds);
      2. with ``sample`` (shared 0/1 per row, from ``poisson_sample``): e'' = where(sample, e', 0) (1 round), so
         only the sampled rows count, and no party knows which;
      3. G = e''^T x and g_b = sum e'' (one matmul, 2 rounds);
      4. add joint Gaussian noise of standard deviation noise_multiplier * clip to each (n rounds);
      5. divide by ``denominator`` (public; default the number of rows; with Poisson sampling, the expected
         batch size, as Opacus does).
    """
    both = stack([error - limit, -limit - error]).relu()
    clipped = error - both[0] + both[1]
    if sample is not None:
        clipped = clipped.where(sample, 0.0)
    weight_grad = clipped.reshape(1, -1) @ x
    bias_grad = clipped.sum().reshape(1)
    std = noise_multiplier * clip
    if std > 0:
        noise = joint_gaussian(session, (weight_grad.numel() + 1,), std)
        weight_grad = weight_grad + noise[:-1].reshape(weight_grad.shape)
        bias_grad = bias_grad + noise[-1:]
    scale = 1.0 / (denominator if denominator is not None else x.shape[0])
    return weight_grad * scale, bias_grad * scale
