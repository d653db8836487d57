"""Input sharing and opening of additive shares over Z_2^64.

A secret x is held as shares x_0 .. x_{n-1} with x = sum x_i mod 2^64.
"""

from __future__ import annotations

import numpy as np
import torch

from protocols.additive import shares
from protocols.party import Party

#: Stream-id domains on the pairwise keys (top byte), so no two uses can collide.
_SHARE_DOMAIN = 1 << 56
_RERANDOMIZE_DOMAIN = 2 << 56


def share(party: Party, encoded: torch.Tensor | None, owner: int) -> torch.Tensor:
    """Secret-share the owner's encoded int64 tensor; the others pass None.  Returns this party's share.

    Steps:
      1. The owner sends the shape to every other party (the shape is public; the values are not).
      2. Every non-owner j takes its share from the PRG stream keyed with the owner: x_j = PRG(K_{owner,j}, tag).
      3. The owner computes the same streams and keeps x_owner = x - sum_j x_j.
    Rounds: 1 (the shape).  Bytes sent: 8 (ndim + 1) per non-owner by the owner; none for the values.
    Error: none (exact in the ring).  Any n-1 shares are uniform and independent of x.
    """
    if not 0 <= owner < party.n_parties:
        raise ValueError(f"owner must be a party rank in 0..{party.n_parties - 1}, got {owner}")
    tag = party.next_tag()
    stream = _SHARE_DOMAIN | tag
    if party.rank == owner:
        if encoded is None:
            raise ValueError(f"party {owner} owns this input and must pass a value, not None")
        header = torch.tensor([encoded.dim(), *encoded.shape], dtype=torch.int64)
        party.notify_opening("share", header.numel() * 8)
        for peer in party.others:
            party.send(peer, tag, header)
        masks = [party.expand(party.pair_prgs[peer], stream, encoded.numel()).reshape(encoded.shape)
                 for peer in party.others]
        party.rounds += 1
        return shares.owner_share(encoded.to(party.device), masks)
    if encoded is not None:
        raise ValueError(f"party {party.rank} does not own this input (owner is {owner}); pass None")
    party.notify_opening("share", 0)
    header = party.recv(owner, tag, "share (shape)")
    ndim = int(header[0]) if header.numel() else -1
    if header.numel() != ndim + 1 or ndim < 0 or bool((header[1:] < 0).any()):
        raise ValueError(f"party {owner} sent a malformed shape for a shared input")
    shape = tuple(int(d) for d in header[1:])
    party.rounds += 1
    return party.expand(party.pair_prgs[owner], stream, int(np.prod(shape, dtype=np.int64))).reshape(shape)


def rerandomize(party: Party, values: torch.Tensor) -> torch.Tensor:
    """Fresh shares of the same value: add a random sharing of zero.  No communication.

    Steps:
      1. Take the next tag t (the same on every party).
      2. For every other party j, expand m_ij = PRG(K_{ij}, t) (the pair's key: both expand the same mask).
      3. Party i adds m_ij for every j > i and subtracts it for every j < i; the masks cancel in the sum.
    Rounds: 0.  Bytes: 0.  Error: none.
    Purpose: after a resume the shares in use are not those of the checkpoint files, so an old file of one
    party and a new file of another do not add up to the secret: each party's share moves by masks that only
    it and one peer know (the pair keys are fresh in every session).
    """
    tag = party.next_tag()
    stream = _RERANDOMIZE_DOMAIN | tag
    masks = {peer: party.expand(party.pair_prgs[peer], stream, values.numel()).reshape(values.shape)
             for peer in party.others}
    return values + shares.zero_share(party.rank, masks)


def share_public(party: Party, encoded: torch.Tensor) -> torch.Tensor:
    """Shares of a public encoded value: party 0 holds it, the others zero.  No communication."""
    return shares.public_share(party.rank, encoded.to(party.device))


def reveal(party: Party, values: torch.Tensor, to: int | None = None) -> torch.Tensor | None:
    """Open a shared value to every party (``to=None``) or to party ``to`` only (the others get None).

    Steps: every party sends its share to the receiver(s); a receiver adds all shares.
    Rounds: 1.  Bytes sent per party: 8 (n-1) k to all, 8 k to one.  Error: none (exact in the ring).
    """
    if to is None:
        return party.open(values, "reveal")
    if not 0 <= to < party.n_parties:
        raise ValueError(f"reveal target must be a party rank in 0..{party.n_parties - 1}, got {to}")
    tag = party.next_tag()
    party.rounds += 1
    party.notify_opening("reveal to one", values.numel() * 8)
    if party.rank != to:
        party.send(to, tag, values)
        return None
    total = shares.recombine([values, *(party.recv(peer, tag, "reveal").reshape(values.shape)
                                        for peer in party.others)])
    party.notify_learned("reveal", tag, total)
    return total


def add_public(party: Party, values: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
    """Shares of x + p for public encoded p (party 0 adds it).  Broadcasts like torch.  No communication."""
    return shares.add_public(party.rank, values, encoded.to(party.device))
