"""The three-party demo: three banks learn their joint loan book's totals without showing each other a row.

Each bank holds the amounts and yearly interest rates of its loans (public shapes, secret values).  Together
they compute the total lent, the interest income (a dot product, so a secret multiplication) and a 2 x 2
exposure matrix (a secret matmul), and reveal only those results.
"""

from __future__ import annotations

from typing import Any

import torch

from smpc.session import Session
from smpc.tensor import cat, stack

#: Each bank's private rows: loan amounts (thousands) and interest rates.  Only bank ``rank`` reads its own.
_BANK_LOANS = {
    0: ([12.0, 7.5, 30.0], [0.041, 0.055, 0.038]),
    1: ([5.0, 22.0, 9.5], [0.062, 0.047, 0.051]),
    2: ([15.0, 4.0, 18.0], [0.044, 0.071, 0.049]),
}


def bank_rows(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    amounts, rates = _BANK_LOANS[rank % len(_BANK_LOANS)]
    return torch.tensor(amounts, dtype=torch.float64), torch.tensor(rates, dtype=torch.float64)


def demo_program(session: Session) -> dict[str, Any]:
    """What every party runs.  Returns the revealed results and this party's traffic."""
    amounts, rates = [], []
    for owner in range(session.world_size):
        mine = bank_rows(owner) if owner == session.rank else (None, None)
        amounts.append(session.share(mine[0], owner=owner))
        rates.append(session.share(mine[1], owner=owner))
    all_amounts = cat(amounts)
    all_rates = cat(rates)
    total = all_amounts.sum()
    income = all_amounts @ all_rates
    per_bank = stack([a.sum() for a in amounts])
    exposure = per_bank.reshape(-1, 1) @ per_bank.reshape(1, -1) * (1.0 / 1000.0)
    return {
        "total_lent": float(total.reveal()),
        "interest_income": float(income.reveal()),
        "mean_rate": float(all_rates.mean().reveal()),
        "exposure": exposure.reveal().tolist(),
        "stats": session.stats.as_dict(),
    }


def plain_reference(n_parties: int) -> dict[str, float]:
    """The same totals in the clear, for the demo to print side by side."""
    amounts = torch.cat([bank_rows(r)[0] for r in range(n_parties)])
    rates = torch.cat([bank_rows(r)[1] for r in range(n_parties)])
    return {
        "total_lent": float(amounts.sum()),
        "interest_income": float(amounts @ rates),
        "mean_rate": float(rates.mean()),
    }
