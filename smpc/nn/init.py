"""Joint initialisation: weights that no one knows, each party's contribution drawn from its own CSPRNG."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch

from protocols.prg import AesCtrPrg, new_key
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session


class InitDraws:
    """One party's private source of uniform draws for joint initialisation.

    AES-128-CTR keyed by the operating system's CSPRNG (``seed=None``, what training uses), so no one else can
    predict the contribution; or, for reproducible tests only, keyed by a hash of an integer ``seed`` that this
    party alone must know (anyone who knows a party's seed knows its contribution; parties must not share seeds).
    Each call of ``uniform`` reads a fresh stream of the key, so several layers may draw from one source.
    """

    __slots__ = ("_prg", "_stream")

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            key = new_key()
        else:
            key = hashlib.sha256(b"smpc joint-init seed:" + str(int(seed)).encode("ascii")).digest()[:16]
        self._prg = AesCtrPrg(key)
        self._stream = 0

    def uniform(self, count: int) -> torch.Tensor:
        """``count`` float64 values uniform in (0, 1), from the next stream."""
        values = self._prg.uniform(self._stream, count)
        self._stream += 1
        return values

    def __repr__(self) -> str:
        return "InitDraws()"


def joint_init_contribution(numel: int, fan_in: int, world_size: int, draws: InitDraws) -> torch.Tensor:
    """One party's private contribution to a joint initialisation: ``numel`` float64 values drawn uniformly
    from (-B/sqrt(n), B/sqrt(n)), B = 1/sqrt(fan_in), so that the sum over n parties has variance B^2/3."""
    bound = (1.0 / fan_in) ** 0.5 / world_size**0.5
    return (draws.uniform(numel) * 2.0 - 1.0) * bound


def _joint_values(session: Session, shapes: list[tuple[int, ...]], fan_in: int,
                  seed: int | InitDraws | None) -> list[SharedTensor]:
    """The shared sums of every party's contribution, one sharing per party for all ``shapes``."""
    numel = sum(int(torch.Size(shape).numel()) for shape in shapes)
    draws = seed if isinstance(seed, InitDraws) else InitDraws(seed)
    mine = joint_init_contribution(numel, fan_in, session.world_size, draws)
    total = session.share(mine if session.rank == 0 else None, owner=0)
    for owner in range(1, session.world_size):
        total = total + session.share(mine if session.rank == owner else None, owner=owner)
    return split_flat(total, shapes)


def split_flat(flat: SharedTensor, shapes: list[tuple[int, ...]] | list[torch.Size]) -> list[SharedTensor]:
    """A flat SharedTensor cut into consecutive pieces of ``shapes`` (local, exact)."""
    pieces, offset = [], 0
    for shape in shapes:
        count = int(torch.Size(shape).numel())
        pieces.append(flat[offset : offset + count].reshape(shape))
        offset += count
    return pieces


def initial_values(session: Session, shapes: list[tuple[int, ...]], fan_in: int, init: str,
                   seed: int | InitDraws | None) -> list[SharedTensor]:
    """A layer's starting parameters of ``shapes``: ``init="joint"`` (``_joint_values``: nobody knows them) or
    ``"zeros"`` (public zeros, no communication; ``seed`` must then be None)."""
    if init == "joint":
        return _joint_values(session, shapes, fan_in, seed)
    if init != "zeros":
        raise ValueError(f"init must be 'joint' or 'zeros', got {init!r}")
    if seed is not None:
        raise ValueError("seed only applies to init='joint'")
    return [session.public(torch.zeros(shape, dtype=torch.float64)) for shape in shapes]
