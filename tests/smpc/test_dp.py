"""Differential privacy in both modes: the noise is sized by the accountant for the target epsilon, the run
reports what it spent (never more than the target), the joint noise has the stated spread and comes from no
single party, and the ledger refuses a run that would exceed the data set's budget, before it starts."""

from __future__ import annotations

import functools
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import protocols
import smpc
from smpc import privacy
from smpc.loan.schema import embedded_dataset
from tests.support.cli import run_smpc
from tests.support.harness import REPLICATED, run_parties
from tests.support.statistics import uniformity_failures


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_smpc("train", "--max-rows", "300", *args, cwd=tmp_path, timeout=300)


@pytest.mark.processes
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
    draws = privacy.gaussian(200_000, 2.5).numpy()
    assert abs(draws.mean()) < 5 * 2.5 / math.sqrt(draws.size)
    assert abs(draws.std() - 2.5) < 5 * 2.5 / math.sqrt(2 * draws.size)


def _joint(session: smpc.Session) -> np.ndarray:
    return privacy.joint_gaussian(session, (40_000,), 3.0).reveal().numpy()


@pytest.mark.parametrize("n_parties", [2, 3, REPLICATED], ids=["2", "3", "3-replicated"])
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


@pytest.mark.processes
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


# -- what leaves MPC under differential privacy ----------------------------------------------------------------
@pytest.mark.processes
def test_dp_refuses_to_show_the_loss(tmp_path: Path) -> None:
    """--show-loss opens exact losses outside the accountant: refused before anything starts, in one line."""
    done = _train(tmp_path, "--dp-epsilon", "3", "--show-loss")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--show-loss" in lines[0] and "--dp-epsilon" in lines[0], done.stderr
    assert "banks and a dealer" not in done.stdout


@pytest.mark.processes
def test_dp_needs_a_declared_schema_for_a_users_data(tmp_path: Path) -> None:
    """A schema inferred from the rows is computed from the data: under DP the user must declare one."""
    done = _train(tmp_path, "--data", str(embedded_dataset()), "--label", "creditability",
                  "--positive", "bad", "--dp-epsilon", "3")
    assert done.returncode == 2 and "declared public schema" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.processes
def test_dp_fedavg_opens_no_statistics(tmp_path: Path) -> None:
    """Under DP, fedavg standardises with the declared scales only: the only values a bank learns are the
    noised round sums (before the fix it also opened the exact joint column sums and second moments)."""
    done = _train(tmp_path, "--mode", "fedavg", "--rounds", "2", "--local-steps", "2", "--dp-epsilon", "3",
                  "--audit", "audit")
    assert done.returncode == 0, done.stderr
    for rank in range(3):
        lines = (tmp_path / "audit" / f"audit-party{rank}.jsonl").read_text().splitlines()
        reveals = [json.loads(line) for line in lines if json.loads(line)["op"] == "reveal"]
        assert len(reveals) == 2, [r["count"] for r in reveals]  # one noised sum per round


@pytest.mark.processes
def test_dp_secure_model_files_carry_no_statistics(tmp_path: Path) -> None:
    """Under DP the secure job standardises with the declared scales: the share files hold the model and no
    statistic of the rows (before the fix they held shares of the exact joint mean and deviation)."""
    done = _train(tmp_path, "--epochs", "1", "--dp-epsilon", "8", "--out", "model")
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "model" / "party0.npz", allow_pickle=False) as archive:
        names = set(archive.files)
        meta = json.loads(str(archive["meta"]))
    assert names == {"meta", "share/0.weight", "share/0.bias"} and meta["standardise"] == "public"


def _limits(session: smpc.Session, rows: torch.Tensor, clip: float, bound: float) -> torch.Tensor:
    shared = session.share(rows if session.rank == 0 else None, owner=0)
    return privacy.row_limits(shared, clip, bound).reveal()


@pytest.mark.parametrize("width, bound, clip", [(20, 20.0, 1.0), (63, 20.0, 1.0), (50, 5000.0, 1.0),
                                                 (100, 20000.0, 4.0), (20, 20.0, 0.05)])
def test_the_clip_holds_at_the_extremes(width: int, bound: float, clip: float) -> None:
    """t_i sqrt(|x_i|^2 + 1) <= clip for every row the bound admits: rows at the bound (every entry at
    +-sqrt(B/D)), zero rows, one-hot-like rows and random rows, over squared norms from 0 to 20,000 (before the
    fix, |x|^2 + 1 beyond rsqrt's domain gave a limit 38x too large, and inside it limits overshot by 5e-4);
    and the limit is not needlessly small (within 1 % of the bound)."""
    top = math.sqrt(bound / width)
    generator = torch.Generator().manual_seed(width)
    rows = torch.cat([
        torch.full((1, width), top), torch.full((1, width), -top), torch.zeros(1, width),
        torch.eye(width)[:3] * min(top * math.sqrt(width), math.sqrt(bound)),
        (torch.rand(60, width, generator=generator, dtype=torch.float64) * 2 - 1) * top,
    ]).double()
    limits = run_parties(functools.partial(_limits, rows=rows, clip=clip, bound=bound), 3)[0]
    norms = limits * torch.sqrt((rows * rows).sum(1) + 1)
    assert float(norms.max()) <= clip, float(norms.max() / clip)
    assert float(norms.min()) >= 0.99 * clip, float(norms.min() / clip)


def test_row_limits_refuse_what_they_cannot_bound() -> None:
    def program(session: smpc.Session) -> list[str]:
        x = session.share(torch.ones(2, 2) if session.rank == 0 else None, owner=0)
        outcomes = []
        for bound, clip in ((40000.0, 1.0), (1000.0, 1e-4)):
            try:
                privacy.row_limits(x, clip, bound)
                outcomes.append("accepted")
            except ValueError as error:
                outcomes.append(str(error))
        return outcomes

    outcomes = run_parties(program, 2)[0]
    assert "fixed-point range" in outcomes[0] and "too small" in outcomes[1]


def _sample(session: smpc.Session) -> tuple[torch.Tensor, torch.Tensor, float]:
    bits, rate = privacy.poisson_sample(session, 4, 25_000, 0.05)
    raw, _ = protocols.bernoulli(session.party, (20_000,), 0.05)  # the ring shares behind such a sample
    return bits.reveal(), raw, rate


def test_poisson_sampling_is_secret_and_has_the_accountants_rate() -> None:
    """Each row joins each step with the sampling rate the accountant uses (5-sigma bound on 100,000 draws),
    every party opens the same sample, and each party's share of it is uniform on its own (no party knows it)."""
    results = run_parties(_sample, 3)
    opened, _, rate = results[0]
    assert abs(rate - 0.05) < 1e-15 and set(opened.unique().tolist()) <= {0.0, 1.0}
    assert all(torch.equal(opened, other) for other, _, _ in results)
    assert abs(float(opened.mean()) - rate) < 5 * math.sqrt(rate * (1 - rate) / opened.numel())
    for _, share, _ in results[1:]:
        assert uniformity_failures(share.numpy().reshape(-1).view(np.uint64), 1e-6) == []
