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


def test_steps_timing_alone_pairs_each_op_and_keeps_the_others_on_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--steps timing` runs neither check; the ops are timed one by one, each on both sides in its own run, so
    one that fails (the cpu matmul here) is reported and the pairs measured before it stay in the table."""
    import smpc

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a check step ran")

    calls: list[str] = []

    def fake_time(device: str, sizes: object, repeats: int, op: str) -> dict[str, object]:
        calls.append(op)
        on_cpu = calls.count(op) == 2  # the device side first, then the cpu (both "cpu" in this test mode)
        if on_cpu and op == "matmul":
            raise smpc.PartyError(1, "MemoryError", "out of memory")
        seconds = {"mul": 2.0, "lr_epoch": 1.0, "matmul": 4.0}[op] * (2 if on_cpu else 1)
        return {"op": op, "size": "s", "online_s": [seconds] * repeats, "offline_s": [0.5] * repeats,
                "median_online_s": seconds, "median_offline_s": 0.5}

    monkeypatch.setattr("benchmarks.gpu_check.check_ring_matmul", refused)
    monkeypatch.setattr("benchmarks.gpu_check.check_ops", refused)
    monkeypatch.setattr("benchmarks.gpu_check.time_device", fake_time)
    out = tmp_path / "check.json"
    assert main(["--device", "cpu", "--quick", "--steps", "timing", "--repeats", "2", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["ring_matmul"] == [] and report["op_checks"] == [] and report["steps"] == ["timing"]
    assert list(report["timing_failures"]) == ["matmul on cpu"]
    assert [row["op"] for row in report["timings"]["device"]] == ["mul", "lr_epoch", "matmul"]
    assert [row["op"] for row in report["timings"]["cpu"]] == ["mul", "lr_epoch"]
    assert [(row["op"], row["ratio"]) for row in report["table"]] == [("mul", 4.5 / 2.5), ("lr_epoch", 2.5 / 1.5)]
    assert calls == ["mul", "mul", "lr_epoch", "lr_epoch", "matmul", "matmul"]
    assert "CHECKS FAILED" in capsys.readouterr().out


def test_repeats_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--repeats must be >= 1"):
        main(["--device", "cpu", "--repeats", "0", "--out", str(tmp_path / "check.json")])
