"""The dealer's offline phase: a recorded plan made ahead of time gives the same results as on-demand
requests, the online phase then sends the dealer nothing, and a program that strays from its plan is stopped."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import smpc
from network import ProtocolError
from protocols.additive.dealer import MAX_PLAN_ELEMENTS, MUL, PLAN, Request, decode_plan, encode_plan
from tests.support.harness import run_parties

X = torch.linspace(-3.0, 3.0, 50, dtype=torch.float64)


def step(session: smpc.Session, x: smpc.SharedTensor) -> torch.Tensor:
    return ((x * x).sigmoid() @ x.reshape(50, 1).expand(50, 2)).reveal()


def planned_program(session: smpc.Session, times: int, wait: bool) -> dict[str, Any]:
    x = session.share(X if session.rank == 0 else None, owner=0)
    with session.record() as plan:
        first = step(session, x)
    session.preprocess(plan, times, wait=wait)
    session.stats.reset()
    later = [step(session, x) for _ in range(times)]
    online_dealer = session.stats.dealer_bytes_sent
    extra = step(session, x)  # beyond the plan: on-demand again
    return {"first": first, "later": later, "extra": extra, "online_dealer_bytes_sent": online_dealer,
            "plan_length": len(plan)}


@pytest.mark.parametrize("wait", [True, False])
@pytest.mark.parametrize("n_parties", [2, 3])
def test_planned_steps_match_on_demand(n_parties: int, wait: bool) -> None:
    """Three planned repetitions compute what the recorded step did (to within the fixed-point error: the
    masks differ, so the last bit may), the online phase sends the dealer nothing (only the plan's one
    message went before it), and a fourth step falls back to requests."""
    results = run_parties(lambda s: planned_program(s, 3, wait), n_parties)
    expected = torch.sigmoid(X * X) @ X.reshape(50, 1).expand(50, 2)
    for result in results:
        assert result["plan_length"] > 0
        for value in [result["first"], *result["later"], result["extra"]]:
            assert torch.allclose(value, expected, atol=0.05), (value, expected)
            assert torch.allclose(value, result["first"], atol=1e-3)
        assert result["online_dealer_bytes_sent"] == 0


def test_straying_from_the_plan_is_refused() -> None:
    """A step that asks for other shapes than planned fails on the last party with PlanMismatch, named."""
    def program(session: smpc.Session) -> None:
        x = session.share(X if session.rank == 0 else None, owner=0)
        with session.record() as plan:
            (x * x).reveal()
        session.preprocess(plan, 1)
        (x[:10] * x[:10]).reveal()

    with pytest.raises(smpc.PartyError, match="PlanMismatch|plan made ahead of time"):
        run_parties(program, 3, recv_timeout=10.0)


def test_plan_encoding_round_trip_and_refusals() -> None:
    """A plan survives encode -> decode; malformed or oversized plans are ProtocolErrors, not crashes."""
    requests = [Request(MUL, 0, (3, 4), (4,)), Request(MUL, 0, (2,), (2,))]
    assert decode_plan(encode_plan(requests, 5)) == (requests, 5)
    for bad in ([PLAN, 1, 1, 99], [PLAN, 1], [PLAN, -1, 0], [PLAN, 1, 1, 7, *Request(MUL, 0, (2,), (2,)).encode()]):
        with pytest.raises(ProtocolError):
            decode_plan(np.array(bad, dtype=np.int64))
    huge = Request(MUL, 0, (1 << 20,), (1 << 20,))
    with pytest.raises(ProtocolError, match="cap"):
        decode_plan(encode_plan([huge], MAX_PLAN_ELEMENTS // (1 << 20) + 1))
