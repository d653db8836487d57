"""Federated averaging with secure aggregation: the aggregate equals the plain weighted average of the banks'
updates within fixed-point error, it is the only value ever opened, and `smpc train --mode fedavg` trains
the loan model (random and skewed splits, the final model kept shared or not, with and without DP)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import protocols
import smpc
from smpc import federated
from tests.support.cli import run_smpc
from tests.support.harness import REPLICATED, run_parties

FEATURES = 5


def _bank_rows(rank: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(rank)  # test data
    rows = 20 + 10 * rank
    x = generator.standard_normal((rows, FEATURES))
    y = (x[:, 0] + 0.3 * generator.standard_normal(rows) > 0).astype(np.float64)
    return x, y


def _model() -> torch.nn.Module:
    """The same initial model on every party (fixed weights: parties are threads, torch's global RNG is shared)."""
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 1), torch.nn.Sigmoid()).double()
    federated.load_flat(model, torch.linspace(-0.3, 0.3, FEATURES + 1, dtype=torch.float64))
    return model


class _Opened(protocols.Observer):
    def __init__(self) -> None:
        self.values: list[tuple[str, torch.Tensor]] = []

    def learned(self, op: str, tag: int, value: torch.Tensor) -> None:
        self.values.append((op, value.clone()))


def _one_round(session: smpc.Session) -> dict:
    watcher = _Opened()
    session.party.observers.append(watcher)
    opened = watcher.values
    x, y = _bank_rows(session.rank)
    outcome = federated.fedavg(session, _model(), x, y, rounds=1, local_steps=3, lr=0.5, batch_size=8, seed=4)
    return {"flat": federated.flat_parameters(outcome.model), "opened": opened}


@pytest.mark.parametrize("n_parties", [2, 3, REPLICATED], ids=["2", "3", "3-replicated"])
def test_secure_aggregate_is_the_weighted_average_and_the_only_opening(n_parties: int) -> None:
    results = run_parties(_one_round, n_parties)
    start = federated.flat_parameters(_model())
    counts = [len(_bank_rows(b)[0]) for b in range(n_parties)]
    expected = start.clone()
    updates = []
    for bank in range(n_parties):
        local = copy.deepcopy(_model())
        x, y = _bank_rows(bank)
        federated.local_training(local, torch.from_numpy(x), torch.from_numpy(y), steps=3, lr=0.5, batch_size=8,
                                 order_seed=[4, 0, bank])
        update = federated.flat_parameters(local) - start
        updates.append(update * counts[bank] / sum(counts))
        expected += updates[-1]
    for result in results:
        assert torch.allclose(result["flat"], expected, atol=1e-4), (result["flat"], expected)
        reveals = [value for op, value in result["opened"]]
        assert [op for op, _ in result["opened"]] == ["reveal"], result["opened"]
        aggregate = reveals[0].double() / 65536
        assert torch.allclose(aggregate, sum(updates), atol=1e-4)
        for update in updates:  # no single bank's update is what was opened
            assert not torch.allclose(aggregate, update, atol=1e-3)


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_smpc("train", "--max-rows", "400", *args, cwd=tmp_path, timeout=300)


@pytest.mark.processes
@pytest.mark.parametrize("extra", [[], ["--split-by", "age_in_years"], ["--keep-shared"]],
                         ids=["random-split", "skewed-split", "kept-shared"])
def test_fedavg_trains_the_loan_model(tmp_path: Path, extra: list[str]) -> None:
    done = _train(tmp_path, "--mode", "fedavg", "--rounds", "5", "--local-steps", "5", "--report", "r.json", *extra)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "fedavg" and report["secure"]["auc"] > 0.65, report
    assert abs(report["secure"]["auc"] - report["plain"]["auc"]) < 0.1, report
    if "--keep-shared" not in extra:
        assert len(report["rounds_detail"]) == 5 and "fedavg round 5" in done.stderr
