"""Federated averaging with secure aggregation: each bank trains the model on its own rows in plain torch; the
banks' updates are averaged under MPC, so no one (there is no coordinator) sees any single bank's update.

Round r of ``fedavg``:
  1. Every bank starts from the same global model and takes ``local_steps`` SGD steps on its own rows
     (mini-batches in a public seeded order), in plain torch.
  2. Its update u_b = theta_b - theta is clipped to L2 norm ``clip`` when differential privacy is on, and
     weighted by the bank's share of the rows, w_b = n_b / N (row counts are public, as the split is).
  3. Every bank secret-shares w_b u_b (1 round each, the values never leave as plaintext); the sum is local.
     With DP, every bank also shares Gaussian noise of its own (``smpc.privacy.joint_gaussian``), so the total
     noise is known to no single party.
  4. The sum is revealed to every bank (1 round), which adds it to the global model; with ``keep_shared``
     the last round's model is not revealed but returned as shares.
Only the weighted sums are ever opened (tests check this at the transport).  Cost per round: n + 1 rounds
(n + 1 more with DP) and about 8 (n - 1) P bytes per party for P parameters.

Differential privacy here is at the level of a bank's whole update in a round (DP-FedAvg, McMahan et al.
2018, "Learning Differentially Private Recurrent Language Models"): every bank takes part in every round
(sampling rate 1), the sensitivity of the weighted sum to one bank is max_b w_b * clip, and the noise standard
deviation is noise_multiplier * that.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from smpc.privacy.noise import joint_gaussian
from smpc.session import Session
from smpc.tensor import SharedTensor


@dataclass
class FedAvgResult:
    """What one bank ends with: the global model (plain unless kept shared), its shares if kept shared, and
    per-round records (party 0 adds the test AUC when it has test rows)."""

    model: torch.nn.Module
    shares: SharedTensor | None = None
    rounds: list[dict] = field(default_factory=list)
    epsilon_spent: float | None = None


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def load_flat(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Write a flat float64 vector back into ``model``'s parameters, in order."""
    at = 0
    with torch.no_grad():
        for parameter in model.parameters():
            count = parameter.numel()
            parameter.copy_(flat[at : at + count].reshape(parameter.shape).to(parameter.dtype))
            at += count


def local_training(model: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor, *, steps: int, lr: float,
                   batch_size: int, order_seed: list[int]) -> None:
    """``steps`` plain SGD steps of BCE on this bank's rows, mini-batches in a public seeded order."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    order = np.random.default_rng(order_seed).permutation(len(features))  # public batch order, not a secret
    batches = max(1, math.ceil(len(order) / batch_size))
    for step in range(steps):
        start = (step % batches) * batch_size
        rows = torch.from_numpy(order[start : start + batch_size])
        optimizer.zero_grad()
        output = model(features[rows]).reshape(-1)
        torch.nn.functional.binary_cross_entropy(output, labels[rows]).backward()
        optimizer.step()


def fedavg(session: Session, model: torch.nn.Module, features: np.ndarray, labels: np.ndarray, *, rounds: int,
           local_steps: int, lr: float, batch_size: int = 32, seed: int = 0, keep_shared: bool = False,
           dp_noise_multiplier: float = 0.0, clip: float = 1.0,
           evaluate: Callable[[torch.nn.Module], dict] | None = None,
           epsilon_after: Callable[[int], float] | None = None,
           progress: Callable[[str], None] | None = None) -> FedAvgResult:
    """Federated averaging of ``model`` over the banks' rows with secure aggregation (see the module docstring).

    Every party calls it with the same initial ``model`` and public settings and its own ``features`` (encoded,
    standardised) and ``labels`` (0/1).  ``dp_noise_multiplier`` > 0 turns on DP-FedAvg with update clipping
    to ``clip``.  ``evaluate(model) -> dict`` (e.g. party 0's test AUC) is called on the revealed model after
    every round; ``epsilon_after(rounds_done)`` (the accountant) adds the privacy spent so far to each record.
    Returns the final model (every bank holds the same one) and per-round records.
    """
    if rounds < 1 or local_steps < 1 or not lr > 0:
        raise ValueError("rounds, local steps and the learning rate must be positive")
    if dp_noise_multiplier < 0 or not clip > 0:
        raise ValueError("the noise multiplier must be >= 0 and the clip norm positive")
    n = session.world_size
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64)).reshape(-1)
    counts = public_row_counts(session, len(x))
    weights = [c / sum(counts) for c in counts]
    global_flat = flat_parameters(model)
    result = FedAvgResult(model=model)
    for round_index in range(rounds):
        local = _copy(model)
        local_training(local, x, y, steps=local_steps, lr=lr, batch_size=batch_size,
                       order_seed=[seed, round_index, session.rank])
        update = flat_parameters(local) - global_flat
        if dp_noise_multiplier > 0:
            norm = float(update.norm())
            update = update * min(1.0, clip / norm) if norm > 0 else update
        weighted = update * weights[session.rank]
        total = None
        for bank in range(n):
            part = session.share(weighted if session.rank == bank else None, owner=bank)
            total = part if total is None else total + part
        assert total is not None
        if dp_noise_multiplier > 0:
            total = total + joint_gaussian(session, (global_flat.numel(),),
                                              dp_noise_multiplier * clip * max(weights))
        last = round_index == rounds - 1
        if keep_shared and last:
            result.shares = total + session.public(global_flat)
            break
        global_flat = global_flat + total.reveal()
        load_flat(model, global_flat)
        record: dict = {"round": round_index + 1}
        if evaluate is not None:
            record.update(evaluate(model))
        if epsilon_after is not None:
            record["epsilon_spent"] = epsilon_after(round_index + 1)
        result.rounds.append(record)
        if progress is not None and session.rank == 0:
            shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
            progress(f"fedavg {shown}")
    return result


def public_row_counts(session: Session, mine: int) -> list[int]:
    """Every bank's row count (public, as the split is): one round."""
    party = session.party
    tag = party.next_tag()
    own = torch.tensor([mine], dtype=torch.int64)
    for peer in party.others:
        party.send(peer, tag, own)
    counts = [0] * session.world_size
    counts[session.rank] = mine
    for peer in party.others:
        counts[peer] = int(party.recv(peer, tag, "row count")[0])
    party.rounds += 1
    if min(counts) <= 0:
        raise ValueError(f"every bank needs at least one training row; counts {counts}")
    return counts


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)
