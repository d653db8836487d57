"""The maths of additive secret sharing over Z_2^64, apart from any network: split, recombine, sharings of
zero, shares of public values.  Pure functions of tensors (int64 arithmetic wraps modulo 2^64, as the ring
does); ``protocols.additive.sharing`` calls them with the masks it expands from PRG keys and the shares it receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def split(value: torch.Tensor, masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Additive shares of ``value`` whose other shares are ``masks``: [value - sum(masks), *masks].
    With uniform masks, any n-1 of the n shares are uniform and independent of ``value``."""
    return [owner_share(value, masks), *masks]


def owner_share(value: torch.Tensor, masks: Iterable[torch.Tensor]) -> torch.Tensor:
    """The owner's share: ``value`` minus every other party's share (its mask)."""
    share = value.clone()
    for mask in masks:
        share -= mask
    return share


def recombine(shares: Iterable[torch.Tensor], *, xor: bool = False) -> torch.Tensor:
    """The shared value: the sum of the shares modulo 2^64 (or, with ``xor``, their XOR)."""
    iterator = iter(shares)
    total = next(iterator).clone()
    for share in iterator:
        if xor:
            total ^= share
        else:
            total += share
    return total


def zero_share(rank: int, pair_masks: dict[int, torch.Tensor]) -> torch.Tensor:
    """Party ``rank``'s share of zero from the masks it shares with each peer j (``pair_masks[j]``, the same
    tensor on both sides): + m_ij for j > rank, - m_ij for j < rank, so the n shares cancel in the sum."""
    total = None
    for peer, mask in sorted(pair_masks.items()):
        term = mask if rank < peer else -mask
        total = term.clone() if total is None else total + term
    if total is None:
        raise ValueError("a sharing of zero needs at least one peer")
    return total


def public_share(rank: int, encoded: torch.Tensor) -> torch.Tensor:
    """Party ``rank``'s share of a public value: party 0 holds it, the others zero."""
    return encoded.clone() if rank == 0 else torch.zeros_like(encoded)


def add_public(rank: int, share: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
    """Party ``rank``'s share of x + p for public p (party 0 adds it), broadcasting as torch does."""
    return share + encoded if rank == 0 else share + torch.zeros_like(encoded)
