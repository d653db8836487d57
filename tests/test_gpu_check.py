"""``benchmarks.gpu_check`` end to end in its CPU test mode (the steps a GPU host runs, on small sizes), and its
refusal of CUDA on a machine without it.  No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import INNER_DIMENSIONS, OP_CHECKS, main
from protocols.family import FAMILIES
from tests.support.cli import repo_env

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def run_gpu_check(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=cwd, env=repo_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.processes
def test_quick_cpu_mode_runs_every_step(tmp_path: Path) -> None:
    """`--device cpu --quick`: every ring matmul size equal, every op of both families within its bound, the
    three timed ops measured on both sides, the table printed and the JSON written; exit status 0."""
    out = tmp_path / "check.json"
    done = run_gpu_check("--device", "cpu", "--quick", "--repeats", "1", "--out", str(out), cwd=tmp_path,
                         timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all checks passed" in done.stdout and "ratio" in done.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["settings"]["device"] == "cpu"
    assert [row["inner"] for row in report["ring_matmul"]] == list(INNER_DIMENSIONS)
    assert all(row["equal"] for row in report["ring_matmul"])
    checked = {(row["protocol"], row["op"]) for row in report["op_checks"] if row["ok"]}
    assert checked == {(family, op) for family in FAMILIES for op in [*OP_CHECKS, "lr_epoch"]}
    assert report["timing_failures"] == {}
    for role in ("device", "cpu"):
        rows = report["timings"][role]
        assert [row["op"] for row in rows] == ["mul", "lr_epoch", "matmul"]
        assert all(len(row["online_s"]) == 1 and row["median_online_s"] > 0 for row in rows)
    assert [row["op"] for row in report["table"]] == ["mul", "lr_epoch", "matmul"]


@no_cuda
def test_cuda_is_refused_at_once_without_a_gpu(tmp_path: Path) -> None:
    """`--device cuda` (the default) without CUDA: exit status 1, one line saying why, nothing written."""
    out = tmp_path / "check.json"
    done = run_gpu_check("--out", str(out), cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["gpu_check: device='cuda' asked for, but this torch sees no CUDA device"]
    assert done.stdout == "" and not out.exists()


@no_cuda
def test_cuda_refusal_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal comes before any step: no party is started and no matmul is checked."""
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("a step ran")

    monkeypatch.setattr("benchmarks.gpu_check.run", started)
    monkeypatch.setattr("smpc.run_local", started)
    with pytest.raises(SystemExit, match="no CUDA device"):
        main(["--device", "cuda", "--out", str(tmp_path / "check.json")])
