"""smpc bench: a small run writes the table, JSON and PNG; its bytes and rounds match the cost model of the
openings made; the network model and the per-size opening cost are what their docstrings say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from smpc.bench.netmodel import LINKS, predict
from smpc.bench.suite import build_parser, opening_cost, run_and_report
from tests.support.cli import run_smpc


@pytest.mark.processes
def test_quick_subset_writes_json_and_png(tmp_path: Path) -> None:
    """Two ops for 2 and 3 parties over CurveZMQ: rows for each, measured bytes within 5 % of the theory
    (frame headers included) and rounds equal to it, a real PNG, and the table on stdout."""
    out = tmp_path / "bench"
    done = run_smpc("bench", "--quick", "--only", "mul", "truncate", "matmul", "--repeats", "1", "--profile",
                    "--out", str(out), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "median ms" in done.stdout and "profile" in done.stdout and "shares on cpu" in done.stdout
    report = json.loads((out / "bench.json").read_text())
    assert report["settings"]["device"] == "cpu"
    rows = report["rows"]
    assert {(r["op"], r["parties"]) for r in rows} == {(op, n) for op in ("mul", "truncate", "matmul") for n in (2, 3)}
    for row in rows:
        assert row["rounds"] == row["theory_rounds"], row
        assert 0 <= row["bytes_vs_theory_pct"] < 5.0, row
        assert row["median_s"] > 0 and row["plain_s"] > 0 and row["dealer_bytes"] > 0
        assert row["lan_s"] < row["wan_s"]
        assert set(row["profile"]) == {"local_compute_s", "prg_s", "serialization_s", "encryption_s", "waiting_s"}
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.processes
def test_replicated_rows_match_their_cost_model(tmp_path: Path) -> None:
    """`--protocol replicated`: three parties, no dealer bytes, measured bytes within 5 % of the replicated
    cost model and rounds equal to it."""
    out = tmp_path / "bench"
    done = run_smpc("bench", "--quick", "--protocol", "replicated", "--only", "mul", "matmul", "gt", "--repeats",
                    "1", "--out", str(out), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert {(r["op"], r["parties"], r["protocol"]) for r in rows} == {
        (op, 3, "replicated") for op in ("mul", "matmul", "gt")}
    for row in rows:
        assert row["rounds"] == row["theory_rounds"], row
        assert 0 <= row["bytes_vs_theory_pct"] < 5.0, row
        assert row["dealer_bytes"] == 0, row


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_in_one_line(tmp_path: Path) -> None:
    """`smpc bench --device cuda` where torch sees no GPU: exit status 1, one line saying why, nothing written."""
    out = tmp_path / "bench"
    done = run_smpc("bench", "--quick", "--device", "cuda", "--out", str(out))
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["smpc bench: device='cuda' asked for, but this torch sees no CUDA device"]
    assert done.stdout == "" and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_refusal_starts_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal comes before the encryption calibration and before any party or dealer is started."""
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the suite started")

    monkeypatch.setattr("smpc.run_local", started)
    monkeypatch.setattr("smpc.bench.suite.calibrate_encryption", started)
    args = build_parser().parse_args(["--quick", "--device", "cuda", "--out", str(tmp_path / "bench")])
    with pytest.raises(SystemExit, match="no CUDA device"):
        run_and_report(args)


def test_opening_cost_by_size() -> None:
    """Broadcast below the threshold ((n-1) S, 1 round); from it up, with n > 2, the largest party's share
    of the two-round form (2 (n-1)/n S for equal chunks, 2 rounds); two parties always broadcast."""
    assert opening_cost(8 * 300, 8, 3, 1 << 18) == (2 * 2400, 1)
    assert opening_cost(8 * 300, 8, 3, 0) == (2 * 2400 * 2 // 3, 2)
    assert opening_cost(8 * 301, 8, 3, 0) == (8 * (301 - 101) + 2 * 8 * 101, 2)
    assert opening_cost(8 * 300, 8, 2, 0) == (2400, 1)
    assert opening_cost(8 * 300, 8, 3, None) == (4800, 1)


def test_network_model() -> None:
    """predicted = compute + rounds x RTT + bytes x 8 / bandwidth, for the LAN and WAN links of the issue."""
    assert LINKS["lan"].rtt_s == 0.2e-3 and LINKS["lan"].bits_per_s == 10e9
    assert LINKS["wan"].rtt_s == 40e-3 and LINKS["wan"].bits_per_s == 100e6
    assert abs(predict(0.5, 10, 12_500_000, LINKS["wan"]) - (0.5 + 0.4 + 1.0)) < 1e-12
