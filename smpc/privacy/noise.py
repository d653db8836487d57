"""Randomness for differential privacy inside MPC: Gaussian noise that no single party knows, and a secret
Poisson sample of the rows (so the accountant's amplification by subsampling holds against every party).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

import protocols
from protocols.prg import AesCtrPrg, new_key
from smpc.session import Session
from smpc.tensor import SharedTensor, bit_tensor


def gaussian(count: int, std: float) -> torch.Tensor:
    """``count`` draws of N(0, std^2) from a fresh AES-CTR stream keyed by the OS's CSPRNG (Box-Muller on
    53-bit uniforms in (0, 1)); never numpy's or torch's generators."""
    uniform = AesCtrPrg(new_key()).uniform(0, 2 * count).numpy()
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


def poisson_sample(session: Session, steps: int, n_rows: int, rate: float) -> tuple[SharedTensor, float]:
    """Secret Poisson sampling: a shared 0/1 matrix (steps x rows), each entry 1 independently with probability
    ``rate`` (rounded to a multiple of 2^-63, returned), known to no party.

    Row i takes part in step t when entry (t, i) is 1.  Because no party, the model owner included, learns the
    sample, the accountant's amplification by subsampling holds for whoever sees the model.  Cost: that of
    ``protocols.bernoulli`` on steps x rows elements (16 rounds).
    """
    bits = session.family.call(_bernoulli_bits, shape=(steps, n_rows), probability=rate)
    return bit_tensor(session, bits), protocols.representable_probability(rate)


def _bernoulli_bits(party: protocols.Party, *, shape: tuple[int, ...], probability: float) -> torch.Tensor:
    return protocols.bernoulli(party, shape, probability)[0]
