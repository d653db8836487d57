"""Party.open: the broadcast and the reduce-scatter/all-gather forms open the same value, with the
documented rounds and bytes, and the form is picked by size alone (the same on every party)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from network.framing import HEADER_SIZE
from tests.support.harness import run_parties


def open_on_parties(values: list[int], n_parties: int, xor: bool, **options: Any) -> list[dict[str, Any]]:
    """Every party holds a share of ``values`` (party 0 the value minus the others' offsets) and opens it."""
    def program(session: smpc.Session) -> dict[str, Any]:
        party = session.party
        base = torch.tensor(values, dtype=torch.int64)
        noise = torch.arange(len(values), dtype=torch.int64) * 0x9E3779B97F4A7C15 + party.rank
        if party.rank == 0:
            share = base.clone()
            for other in range(1, n_parties):
                other_noise = torch.arange(len(values), dtype=torch.int64) * 0x9E3779B97F4A7C15 + other
                share = share ^ other_noise if xor else share - other_noise
        else:
            share = noise
        session.stats.reset()
        opened = party.open(share, "test", xor=xor)
        return {"opened": opened.tolist(), **session.stats.as_dict(),
                "gather": party.uses_gather(8 * len(values))}

    return run_parties(program, n_parties, **options)


@pytest.mark.parametrize("n_parties", [3, 4])
@given(values=st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=1, max_size=40), xor=st.booleans())
def test_gather_opening_matches_broadcast(n_parties: int, values: list[int], xor: bool) -> None:
    """gather_bytes=0 forces reduce-scatter/all-gather: same opened value, 2 rounds, each party sends the
    other parties' chunks once and its own opened chunk n-1 times: 2 (n-1) ceil-or-floor(k/n) elements."""
    forced = open_on_parties(values, n_parties, xor, gather_bytes=0)
    plain = open_on_parties(values, n_parties, xor, gather_bytes=None)
    for rank, (gathered, broadcast) in enumerate(zip(forced, plain)):
        assert gathered["opened"] == broadcast["opened"] == values
        assert gathered["gather"] and not broadcast["gather"]
        assert gathered["rounds"] == 2 and broadcast["rounds"] == 1
        chunks = [len(c) for c in torch.tensor_split(torch.arange(len(values)), n_parties)]
        scatter = sum(size for peer, size in enumerate(chunks) if peer != rank)
        gather = (n_parties - 1) * chunks[rank]
        assert gathered["bytes_sent"] == 8 * (scatter + gather) + 2 * (n_parties - 1) * HEADER_SIZE
        assert broadcast["bytes_sent"] == 8 * (n_parties - 1) * len(values) + (n_parties - 1) * HEADER_SIZE


def test_form_is_picked_by_size() -> None:
    """Below gather_bytes an opening broadcasts; from it up it gathers; two parties always broadcast (the
    two-round form would send as much)."""
    small = open_on_parties([1] * 15, 3, False, gather_bytes=128)
    large = open_on_parties([1] * 16, 3, False, gather_bytes=128)
    pair = open_on_parties([1] * 16, 2, False, gather_bytes=0)
    assert all(not r["gather"] and r["rounds"] == 1 for r in small)
    assert all(r["gather"] and r["rounds"] == 2 for r in large)
    assert all(not r["gather"] and r["rounds"] == 1 for r in pair)


def test_gather_bytes_must_agree_and_be_valid() -> None:
    """A negative gather_bytes is refused when the options are made; it is part of the handshake."""
    with pytest.raises(ValueError, match="gather_bytes"):
        smpc.SessionOptions(n_parties=3, gather_bytes=-1)
    assert smpc.SessionOptions(n_parties=3, gather_bytes=None).handshake()["gather_bytes"] == -1
    assert smpc.SessionOptions(n_parties=3, gather_bytes=5).handshake()["gather_bytes"] == 5


def test_cuda_is_refused_clearly_without_a_gpu() -> None:
    """device='cuda' on a torch that sees no GPU is refused when the options are made, saying why."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal is for machines without one")
    with pytest.raises(ValueError, match="no CUDA device"):
        smpc.SessionOptions(n_parties=3, device="cuda")
    with pytest.raises(ValueError, match="cpu' or 'cuda"):
        smpc.SessionOptions(n_parties=3, device="meta")
