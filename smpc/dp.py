"""Differential privacy inside MPC: noise generated jointly (no single party knows it) and the clipped,
noised gradient step of logistic regression (DP-SGD, Abadi et al. 2016) on shares.

The accountant (how much noise a target epsilon needs, and how much a run has spent) is ``smpc.privacy``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from protocols.prg import AesCtrPrg, new_key
from smpc.session import Session
from smpc.tensor import SharedTensor


def gaussian(count: int, std: float) -> torch.Tensor:
    """``count`` draws of N(0, std^2) from a fresh AES-CTR stream keyed by the OS's CSPRNG (Box-Muller on
    53-bit uniforms in (0, 1)); never numpy's or torch's generators."""
    words = AesCtrPrg(new_key()).ring(0, 2 * count).numpy().view(np.uint64)
    uniform = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53
    u1, u2 = uniform[:count], uniform[count:]
    return torch.from_numpy(std * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2))


def joint_gaussian(session: Session, shape: Sequence[int], std: float) -> SharedTensor:
    """Shares of Gaussian noise that no single party knows.

    Steps: every party draws N(0, std^2 / (n-1)) noise locally (``gaussian``) and shares it (n rounds, one per
    owner); the shared sum is the noise.  Any one party knows its own part only; the other n-1 parts alone
    have variance std^2, so the guarantee computed for std holds against every single party (the total
    variance is std^2 n/(n-1)).  Cost: n rounds, no bytes beyond the shape headers (shares are PRG streams).
    """
    n = session.world_size
    shape = tuple(int(d) for d in shape)
    own = gaussian(math.prod(shape), std / math.sqrt(n - 1)).reshape(shape)
    total = None
    for owner in range(n):
        part = session.share(own if session.rank == owner else None, owner=owner)
        total = part if total is None else total + part
    assert total is not None
    return total


def clipped_noisy_gradient(session: Session, x: SharedTensor, error: SharedTensor, limit: SharedTensor,
                           clip: float, noise_multiplier: float) -> tuple[SharedTensor, SharedTensor]:
    """DP-SGD gradient of logistic regression on a batch, on shares: (weight gradient, bias gradient).

    For example i the BCE gradient is e_i [x_i, 1] with e_i = p_i - y_i, of norm |e_i| sqrt(|x_i|^2 + 1), so
    clipping it to ``clip`` is clamping e_i to +-t_i with t_i = clip / sqrt(|x_i|^2 + 1) (``limit``, computed
    once per row).  Steps: 1. e' = e - relu(e - t) + relu(-t - e) (two ReLUs, batched: 9 rounds);
    2. G = e'^T x and g_b = sum e' (one matmul, 2 rounds); 3. add joint Gaussian noise of standard deviation
    noise_multiplier * clip to each (n rounds); 4. divide by the batch size (public).
    """
    batch = x.shape[0]
    both = torch.stack([error - limit, -limit - error]).relu()
    clipped = error - both[0] + both[1]
    weight_grad = clipped.reshape(1, -1) @ x
    bias_grad = clipped.sum().reshape(1)
    std = noise_multiplier * clip
    if std > 0:
        noise = joint_gaussian(session, (weight_grad.numel() + 1,), std)
        weight_grad = weight_grad + noise[:-1].reshape(weight_grad.shape)
        bias_grad = bias_grad + noise[-1:]
    return weight_grad * (1.0 / batch), bias_grad * (1.0 / batch)


def row_limits(x: SharedTensor, clip: float) -> SharedTensor:
    """t_i = clip / sqrt(|x_i|^2 + 1) for every row of shared x (one product, one inverse square root)."""
    squares = (x * x).sum(1) + 1.0
    return squares.rsqrt() * clip
