"""softmax and log_softmax against float64 torch, for 2 and 3 parties of the dealer family and the replicated
family's 3, within their documented bounds."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

import smpc
from tests.support.harness import REPLICATED, run_parties

EXP_ERROR = 5.6e-4
LOG_ERROR = 1e-4


def softmax_bound(m: int) -> float:
    return (m + 1) * EXP_ERROR + 4e-4


def log_softmax_bound(m: int) -> float:
    return LOG_ERROR + m * EXP_ERROR


def _rows(draw: st.DrawFn) -> torch.Tensor:
    m = draw(st.integers(1, 16))
    rows = draw(st.integers(1, 6))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 1000.0]))
    values = draw(st.lists(st.floats(-1.0, 1.0), min_size=rows * m, max_size=rows * m))
    return torch.tensor(values, dtype=torch.float64).reshape(rows, m) * scale


rows_strategy = st.composite(_rows)()


def _program(values: torch.Tensor, dim: int):
    def program(session: smpc.Session) -> tuple[torch.Tensor, torch.Tensor]:
        x = session.share(values if session.rank == 0 else None, owner=0)
        return torch.softmax(x, dim).reveal(), torch.nn.functional.log_softmax(x, dim=dim).reveal()

    return program


def _check(values: torch.Tensor, dim: int, parties: int) -> None:
    encoded = smpc.FixedPoint().decode(smpc.FixedPoint().encode(values))
    m = values.shape[dim]
    soft, log_soft = run_parties(_program(values, dim), parties)[0]
    assert float((soft - encoded.softmax(dim)).abs().max()) <= softmax_bound(m)
    assert float((log_soft - encoded.log_softmax(dim)).abs().max()) <= log_softmax_bound(m)
    assert float(soft.min()) >= 0.0


@given(values=rows_strategy, parties=st.sampled_from([2, 3, REPLICATED]), last=st.booleans())
def test_softmax_and_log_softmax_match_torch(values: torch.Tensor, parties: int, last: bool) -> None:
    _check(values, 1 if last else 0, parties)


def test_edges_ties_saturation_and_extremes() -> None:
    """Equal entries, one dominant entry, the range's ends, and the longest documented row (32)."""
    edge = torch.tensor([[0.0, 0.0, 0.0, 0.0], [30000.0, -30000.0, 0.0, 1.0],
                         [-32767.0, -32767.0, -32767.0, -32766.0], [5.0, 5.0 + 2**-16, 5.0, -5.0]],
                        dtype=torch.float64)
    for parties in (2, 3):
        _check(edge, 1, parties)
    long_row = torch.linspace(-3.0, 3.0, 32, dtype=torch.float64).reshape(1, 32)
    _check(long_row, 1, 3)
