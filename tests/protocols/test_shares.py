"""The maths of additive sharing without any transport: split and recombine, sharings of zero, public values."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from protocols.additive import shares

WORDS = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=16)


@given(value=WORDS, parties=st.integers(2, 5), data=st.data())
def test_split_then_recombine_gives_the_value_back(value: list[int], parties: int, data: st.DataObject) -> None:
    secret = torch.tensor(value, dtype=torch.int64)
    masks = [torch.tensor(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=len(value),
                                             max_size=len(value))), dtype=torch.int64) for _ in range(parties - 1)]
    parts = shares.split(secret, masks)
    assert len(parts) == parties and all(torch.equal(a, b) for a, b in zip(parts[1:], masks))
    assert torch.equal(shares.recombine(parts), secret)
    assert torch.equal(shares.recombine([secret ^ masks[0], masks[0]], xor=True), secret)


@given(parties=st.integers(2, 5), data=st.data())
def test_zero_shares_cancel(parties: int, data: st.DataObject) -> None:
    pair = {(i, j): torch.tensor(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=4, max_size=4)),
                                 dtype=torch.int64) for i in range(parties) for j in range(i + 1, parties)}
    zero = [shares.zero_share(rank, {peer: pair[min(rank, peer), max(rank, peer)] for peer in range(parties)
                                     if peer != rank}) for rank in range(parties)]
    assert torch.equal(shares.recombine(zero), torch.zeros(4, dtype=torch.int64))


def test_public_values_and_public_additions() -> None:
    value, share = torch.tensor([5, -7]), torch.tensor([1, 2])
    assert torch.equal(shares.recombine([shares.public_share(r, value) for r in range(3)]), value)
    assert torch.equal(shares.add_public(0, share, value), share + value)
    assert torch.equal(shares.add_public(1, share, torch.tensor([[1, 2], [3, 4]])), share.expand(2, 2))
