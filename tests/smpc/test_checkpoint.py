"""Checkpoint and resume: atomic, committed only when every party wrote, resumed from the newest checkpoint
all parties committed with re-randomised shares; a run killed mid-way and resumed reaches the AUC of an
uninterrupted run.  Also the run-level refusals: a diverging loss, and a truncation budget a run would
exceed, refused before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import protocols
import smpc
from smpc.loan import checkpoint
from tests.support.cli import run_smpc, start_smpc
from tests.support.harness import run_parties

TIMEOUT = 180
#: A short loan job (300 rows, 210 for training: 7 batches of 32 per epoch).
JOB = ["--max-rows", "300", "--epochs", "6", "--seed", "1"]


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_smpc("train", *args, cwd=cwd, timeout=TIMEOUT)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _workers(pid: int) -> list[int]:
    """The run's party and dealer processes: the children of its fork server (multiprocessing's, a child of the
    run), or the run's own children where it spawns them; never multiprocessing's resource tracker."""
    direct = _children(pid)
    servers = [child for child in direct if "multiprocessing.forkserver" in _cmdline(child)]
    found = [worker for server in servers for worker in _children(server)] if servers else direct
    return [worker for worker in found if "resource_tracker" not in _cmdline(worker)]


def _all_committed(directory: Path, parties: int = 3) -> list[int]:
    return sorted(set.intersection(*(set(checkpoint.committed_steps(directory, r)) for r in range(parties))))


@pytest.mark.processes
@pytest.mark.parametrize("protocol", ["dealer", "replicated"])
def test_a_killed_run_resumes_to_the_same_auc(tmp_path: Path, protocol: str) -> None:
    """Kill one party process (SIGKILL) after the first committed checkpoint; the run fails; --resume
    finishes it, and its test AUC is within 0.005 of the same job run without interruption (both families;
    a checkpoint of one family is refused by the other)."""
    job = [*JOB, "--protocol", protocol]
    whole = _train(*job, "--report", "whole.json", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    folder = tmp_path / "checkpoints"
    run = start_smpc("train", *job, "--checkpoint-every", "4", "--checkpoint-dir", str(folder), cwd=tmp_path)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (folder.is_dir() and _all_committed(folder)) and time.monotonic() < deadline:
            assert run.poll() is None, run.communicate()
            time.sleep(0.02)
        workers = _workers(run.pid)
        assert len(workers) == (4 if protocol == "dealer" else 3), workers  # three parties (and the dealer)
        os.kill(workers[1], signal.SIGKILL)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode != 0 and "failed" in err, err
    committed = _all_committed(folder)
    assert committed and max(committed) < 42, committed  # stopped before the end (6 epochs x 7 batches)
    other = "replicated" if protocol == "dealer" else "dealer"
    refused = _train(*JOB, "--protocol", other, "--resume", str(folder), cwd=tmp_path)
    assert refused.returncode != 0 and "resume with the same protocol" in refused.stderr, refused.stderr
    resumed = _train(*job, "--resume", str(folder), "--report", "resumed.json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    auc_whole = json.loads((tmp_path / "whole.json").read_text())["secure"]["auc"]
    auc_resumed = json.loads((tmp_path / "resumed.json").read_text())["secure"]["auc"]
    assert abs(auc_resumed - auc_whole) <= 0.005, (auc_whole, auc_resumed)


@pytest.mark.processes
def test_resume_refuses_other_settings_and_a_missing_checkpoint(tmp_path: Path) -> None:
    """--resume with another learning rate names the differing setting; a directory with no checkpoint
    committed by every party says so; neither prints a traceback."""
    folder = tmp_path / "ck"
    first = _train("--max-rows", "200", "--epochs", "2", "--checkpoint-every", "3", "--checkpoint-dir", str(folder),
                   cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    other = _train("--max-rows", "200", "--epochs", "2", "--lr", "0.5", "--resume", str(folder), cwd=tmp_path)
    assert other.returncode != 0 and "other settings (lr)" in other.stderr and "Traceback" not in other.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = _train("--max-rows", "200", "--epochs", "2", "--resume", str(empty), cwd=tmp_path)
    assert none.returncode != 0 and "no checkpoint that every party committed" in none.stderr


def test_checkpoint_files_are_atomic_and_pruned(tmp_path: Path) -> None:
    """write + commit per party; committed_steps only lists steps whose file and mark both exist; each party
    keeps its newest two; a half-written step (no commit) is not offered; load checks rank and step."""
    arrays = {"model/w": np.arange(6, dtype=np.int64)}
    for step in (3, 6, 9):
        for rank in range(3):
            checkpoint.write(tmp_path, step, rank, arrays, {"config": {}})
        for rank in range(3):
            checkpoint.commit(tmp_path, step, rank)
    checkpoint.write(tmp_path, 12, 0, arrays, {"config": {}})  # party 0 wrote 12, then the run died
    for rank in range(3):
        assert checkpoint.committed_steps(tmp_path, rank) == [6, 9]
    assert not (tmp_path / "step-00000003").exists()
    assert not list(tmp_path.rglob(".*.tmp"))
    loaded, meta = checkpoint.load(tmp_path, 9, 1)
    assert np.array_equal(loaded["model/w"], arrays["model/w"]) and meta["step"] == 9 and meta["rank"] == 1
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(tmp_path, 12, 1)


def _rerandomized(session: smpc.Session) -> tuple[list[float], bool]:
    x = session.share(torch.tensor([1.5, -2.25, 3.0], dtype=torch.float64) if session.rank == 0 else None, 0)
    fresh = protocols.rerandomize(session.party, x.local_share)
    return smpc.SharedTensor(session, fresh).reveal().tolist(), bool((fresh != x.local_share).all())


@pytest.mark.parametrize("n_parties", [2, 3])
def test_rerandomize_keeps_the_value_and_changes_every_share(n_parties: int) -> None:
    for value, changed in run_parties(_rerandomized, n_parties):
        assert value == [1.5, -2.25, 3.0] and changed


@pytest.mark.processes
def test_a_diverging_loss_stops_training(tmp_path: Path) -> None:
    """With --show-loss and a learning rate of 1000 the loss climbs; training stops saying so and how to fix it."""
    done = _train("--max-rows", "300", "--epochs", "3", "--lr", "1000", "--show-loss", cwd=tmp_path)
    assert done.returncode != 0
    assert "the training loss diverged" in done.stderr and "lower --lr" in done.stderr


@pytest.mark.processes
def test_a_run_over_the_truncation_budget_is_refused_before_training(tmp_path: Path) -> None:
    """Two parties with the local shift: the run's lower bound on expected wrong truncations is over the
    budget, so it is refused before the first batch (no progress line), naming the numbers and the fix."""
    done = _train("--parties", "2", "--truncation", "local", "--max-rows", "300", "--epochs", "2", cwd=tmp_path)
    assert done.returncode != 0
    assert "expected failures" in done.stderr and "over the budget" in done.stderr and "batch" not in done.stderr
    refused = _train("--truncation", "local", "--max-rows", "300", cwd=tmp_path)
    assert refused.returncode == 2 and "only correct for two parties" in refused.stderr
