"""Differential privacy in both modes: the noise is sized by the accountant for the target epsilon, the run
reports what it spent (never more than the target), the joint noise has the stated spread and comes from no
single party, and the ledger refuses a run that would exceed the data set's budget, before it starts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import smpc
from smpc import dp, privacy
from tests.harness import run_parties


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smpc", "train", "--max-rows", "300", *args], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mode", ["secure", "fedavg"])
def test_a_dp_run_spends_at_most_its_target(tmp_path: Path, mode: str) -> None:
    done = _train(tmp_path, "--mode", mode, "--epochs", "2", "--rounds", "3", "--local-steps", "3",
                  "--dp-epsilon", "3", "--report", "r.json")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert 2.5 < report["epsilon_spent"] <= 3.0 and report["delta"] == 1e-5, report
    assert "epsilon spent" in done.stdout + done.stderr


def test_gaussian_noise_has_the_stated_spread() -> None:
    """The CSPRNG Box-Muller draws: mean 0 and standard deviation as asked (200,000 draws, 5-sigma bounds)."""
    draws = dp.gaussian(200_000, 2.5).numpy()
    assert abs(draws.mean()) < 5 * 2.5 / math.sqrt(draws.size)
    assert abs(draws.std() - 2.5) < 5 * 2.5 / math.sqrt(2 * draws.size)


def _joint(session: smpc.Session) -> np.ndarray:
    return dp.joint_gaussian(session, (40_000,), 3.0).reveal().numpy()


@pytest.mark.parametrize("n_parties", [2, 3])
def test_joint_noise_adds_every_partys_part(n_parties: int) -> None:
    """All parties open the same noise; its variance is 9 n/(n-1) (each party adds 9/(n-1)), so the parts of
    the other n-1 parties alone have variance 9, the guarantee's standard deviation of 3."""
    values = run_parties(_joint, n_parties)
    assert all(np.array_equal(v, values[0]) for v in values)
    expected = 9.0 * n_parties / (n_parties - 1)
    assert abs(values[0].var() - expected) < 6 * expected * math.sqrt(2 / values[0].size)


def test_more_privacy_needs_more_noise() -> None:
    sigmas = [privacy.noise_multiplier_for(eps, 1e-5, 32 / 700, 220) for eps in (1.0, 3.0, 8.0)]
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0
    fed = [privacy.noise_multiplier_for(eps, 1e-5, 1.0, 10) for eps in (1.0, 3.0, 8.0)]
    assert fed[0] > fed[1] > fed[2] > 0


def test_the_ledger_refuses_an_over_budget_run_before_it_starts(tmp_path: Path) -> None:
    first = _train(tmp_path, "--mode", "fedavg", "--rounds", "2", "--local-steps", "2", "--dp-epsilon", "1.5",
                   "--ledger", "ledger.json", "--budget", "2", "1e-4")
    assert first.returncode == 0, first.stderr
    assert "this data set has spent epsilon" in first.stdout
    second = _train(tmp_path, "--mode", "fedavg", "--rounds", "2", "--local-steps", "2", "--dp-epsilon", "1",
                    "--ledger", "ledger.json", "--budget", "2", "1e-4")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert "budget" in second.stderr and "banks and a dealer" not in second.stdout  # refused before launching
    entries = json.loads((tmp_path / "ledger.json").read_text())
    assert len(entries if isinstance(entries, list) else entries["entries"]) == 1
    plain = _train(tmp_path, "--mode", "fedavg", "--ledger", "ledger.json")
    assert plain.returncode == 2 and "add --dp-epsilon" in plain.stderr
