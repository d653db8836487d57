"""Key set-up of a session, over the (encrypted) transport, on tag 0 of every link.

The dealer draws one PRG key per party; each party i draws one key per party j > i.  Keys come from the
operating system's CSPRNG and travel only over the authenticated, encrypted channels of the transport.
"""

from __future__ import annotations

import hashlib

import numpy as np

from network import Transport
from protocols.party import SETUP_TAG
from protocols.prg import AesCtrPrg, new_key


def _key_array(key: bytes) -> np.ndarray:
    return np.frombuffer(key, dtype=np.uint8).copy()


def dealer_keys(transport: Transport, n_parties: int) -> list[AesCtrPrg]:
    """Dealer side: send party i its key; return the n PRGs (the dealer keeps all of them)."""
    keys = [new_key() for _ in range(n_parties)]
    for party, key in enumerate(keys):
        transport.send(party, SETUP_TAG, _key_array(key))
    return [AesCtrPrg(key) for key in keys]


def party_keys(transport: Transport, rank: int, n_parties: int) -> tuple[AesCtrPrg, dict[int, AesCtrPrg]]:
    """Party side: receive the dealer key; agree a pairwise key with every other party.  One round."""
    pair = pairwise_keys(transport, rank, n_parties)
    dealer = bytes(transport.recv(n_parties, SETUP_TAG, op="key set-up").tobytes())
    return AesCtrPrg(dealer), {peer: AesCtrPrg(key) for peer, key in pair.items()}


def pairwise_keys(transport: Transport, rank: int, n_parties: int) -> dict[int, bytes]:
    """A fresh 128-bit key shared with every other party: party i draws the key of each pair (i, j > i) and
    sends it over the encrypted link.  One round."""
    pair: dict[int, bytes] = {}
    for peer in range(rank + 1, n_parties):
        pair[peer] = new_key()
        transport.send(peer, SETUP_TAG, _key_array(pair[peer]))
    for peer in range(rank):
        pair[peer] = bytes(transport.recv(peer, SETUP_TAG, op="key set-up").tobytes())
    return pair


def derived_key(key: bytes, purpose: bytes) -> bytes:
    """An independent 128-bit key for ``purpose`` from ``key`` (SHA-256 of a label and the key, truncated), so
    that one agreed key can seed several uses whose streams never meet."""
    return hashlib.sha256(b"smpc key derivation:" + purpose + b":" + key).digest()[:16]
