"""smpc bench --versus crypten / python -m benchmarks.versus: our side runs through the public API and reports
total, online and offline apart; CrypTen's side is read from the anchors' scripts' JSON and divided op by op.

CI has no CrypTen: a stand-in for the anchors' scripts (same arguments, same JSON shape, fixed medians) checks
that the harness runs them with the right sizes and computes each ratio from what they wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from smpc.bench import versus
from tests.support.cli import run_smpc

#: Stand-ins for shared/anchors/bench_crypten.py and bench_crypten_logreg.py: they record their arguments and
#: write the anchors' JSON shape with a median of 1 s for mul, 2 s for sigmoid and 50 s for the epoch.
FAKE_BENCH = '''
import argparse, json
ap = argparse.ArgumentParser()
for flag in ("--reps", "--threads", "--ops", "--provider", "--out", "--mul-sizes", "--mm-sizes", "--cmp-size",
             "--sig-size"):
    ap.add_argument(flag)
args = ap.parse_args()
with open(CALLS, "a") as log:
    log.write(json.dumps(vars(args)) + "\\n")
summary = {"wall_total_s": 0.0, "provider": args.provider}
for op in args.ops.split(","):
    if op == "mul":
        for n in args.mul_sizes.split(","):
            summary["mul_" + n] = {"median_s": 1.0}
    if op == "sigmoid":
        summary["sigmoid_" + args.sig_size] = {"median_s": 2.0}
json.dump(summary, open(args.out, "w"))
'''
FAKE_LOGREG = '''
import argparse, json
ap = argparse.ArgumentParser()
for flag in ("--reps", "--threads", "--variants", "--provider", "--json"):
    ap.add_argument(flag)
args = ap.parse_args()
json.dump({"manual": {"median_s": 50.0}}, open(args.json, "w"))
'''

#: Stand-in for shared/anchors/bench_spu.py: records its arguments, writes its JSON shape (keys op_size and
#: lr_epoch_stepwise) with a median of 0.5 s for mul and 10 s for the epoch.
FAKE_SPU = '''
import argparse, json
ap = argparse.ArgumentParser()
for flag in ("--protocol", "--reps", "--threads", "--ops", "--out", "--mul-sizes", "--mm-size", "--cmp-size",
             "--sig-size"):
    ap.add_argument(flag)
ap.add_argument("--no-lr-fused", action="store_true")
args = ap.parse_args()
with open(CALLS, "a") as log:
    log.write(json.dumps(vars(args)) + "\\n")
summary = {"engine": "spu"}
for op in args.ops.split(","):
    if op == "mul":
        for n in args.mul_sizes.split(","):
            summary["mul_" + n] = {"median_s": 0.5}
    if op == "lr":
        summary["lr_epoch_stepwise"] = {"median_s": 10.0}
json.dump(summary, open(args.out, "w"))
'''


def test_ratios_and_targets_are_computed_from_both_sides() -> None:
    ours = [
        {"op": "mul", "size": 10**5, "total_s": 0.5, "online_s": 0.25, "offline_s": 0.25},
        {"op": "sigmoid", "size": 10**4, "total_s": 0.1, "online_s": 0.1, "offline_s": 0.0},
        {"op": "log", "size": 10**4, "total_s": 0.4, "online_s": 0.4, "offline_s": 0.0},
        {"op": "sqrt", "size": 10**4, "total_s": 0.2, "online_s": 0.2, "offline_s": 0.0},
        {"op": "open1", "size": 1, "total_s": 200e-6, "online_s": 200e-6, "offline_s": 0.0},
    ]
    rows = {r["op"]: r for r in versus.compare(ours, {("mul", 10**5): {"median_s": 2.0}})}
    assert rows["mul"]["speedup"] == 4.0 and rows["mul"]["online_speedup"] == 8.0
    assert rows["mul"]["met"] == "yes (SPU not run)"  # 4x against 3x, total against total; SPU unmeasured
    assert rows["log"]["vs_sigmoid"] == pytest.approx(4.0) and rows["log"]["met"] == "NO"
    assert rows["sqrt"]["vs_sigmoid"] == pytest.approx(2.0) and rows["sqrt"]["met"] == "yes"
    assert rows["open1"]["met"] == "NO"
    assert "speedup" not in rows["sigmoid"]  # CrypTen did not run it: no ratio made up
    # mul 10^5 must also beat SPU: 4x CrypTen is not enough when SPU is faster than us
    rows = {r["op"]: r for r in versus.compare(ours, {("mul", 10**5): {"median_s": 2.0}},
                                               {("mul", 10**5): {"median_s": 0.25}})}
    assert rows["mul"]["spu_speedup"] == 0.5 and rows["mul"]["met"] == "NO"


@pytest.mark.processes
def test_versus_runs_both_sides_in_one_invocation(tmp_path: Path) -> None:
    """`smpc bench --versus crypten` with a stand-in CrypTen: our rows from three processes over CurveZMQ, the
    stand-in called with the same sizes, and each ratio CrypTen's median over our total."""
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    calls = tmp_path / "calls.log"
    (anchors / "bench_crypten.py").write_text(f"CALLS = {str(calls)!r}\n" + FAKE_BENCH)
    (anchors / "bench_crypten_logreg.py").write_text(FAKE_LOGREG)
    out = tmp_path / "out"
    spu_calls = tmp_path / "spu-calls.log"
    (anchors / "bench_spu.py").write_text(f"CALLS = {str(spu_calls)!r}\n" + FAKE_SPU)
    done = run_smpc("bench", "--versus", "crypten", "--crypten-python", sys.executable, "--spu-python",
                    sys.executable, "--anchors", str(anchors), "--quick", "--only", "open1", "mul", "sigmoid", "log",
                    "--repeats", "1", "--out", str(out), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x CrypTen (total)" in done.stdout
    report = json.loads((out / "versus.json").read_text())
    rows = {r["op"]: r for r in report["rows"]}
    assert set(rows) == {"open1", "mul", "sigmoid", "log"}
    assert all(r["protocol"] == "replicated" for r in rows.values())  # the 3-party default
    assert rows["mul"]["crypten_s"] == 1.0 and rows["mul"]["speedup"] == pytest.approx(1.0 / rows["mul"]["total_s"])
    assert rows["sigmoid"]["crypten_s"] == 2.0
    assert rows["log"]["vs_sigmoid"] == pytest.approx(rows["log"]["total_s"] / rows["sigmoid"]["total_s"])
    assert rows["open1"]["rounds"] == 1 and rows["open1"]["total_s"] > 0
    assert all(r["total_s"] >= r["online_s"] > 0 or r["protocol"] == "replicated" for r in rows.values())
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [(m["ops"], m["mul_sizes"], m["sig_size"]) for m in made] == [("mul", "10000", None),
                                                                          ("sigmoid", "10000", "1000")]
    assert {m["provider"] for m in made} == {"TFP"} and {m["threads"] for m in made} == {"1"}
    assert sorted(p.name for p in anchors.iterdir()) == ["bench_crypten.py", "bench_crypten_logreg.py",
                                                         "bench_spu.py"]
    (spu_made,) = [json.loads(line) for line in spu_calls.read_text().splitlines()]
    assert (spu_made["protocol"], spu_made["ops"], spu_made["mul_sizes"], spu_made["sig_size"]) == (
        "ABY3", "mul,sigmoid", "10000", "1000")
    assert spu_made["threads"] == "1" and spu_made["no_lr_fused"]
    assert rows["mul"]["spu_s"] == 0.5 and rows["mul"]["spu_speedup"] == pytest.approx(0.5 / rows["mul"]["total_s"])


@pytest.mark.processes
def test_dealer_family_reports_online_and_offline_apart(tmp_path: Path) -> None:
    """`python -m benchmarks.versus --protocol dealer` without CrypTen: the total includes the dealer's inline
    work, online is timed with the material made ahead, offline is the time that took; no ratio is invented."""
    out = tmp_path / "out"
    done = run_smpc("bench", "--versus", "crypten", "--protocol", "dealer", "--quick", "--only", "mul",
                    "--repeats", "2", "--out", str(out), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CrypTen not run" in done.stdout
    (row,) = json.loads((out / "versus.json").read_text())["rows"]
    assert row["protocol"] == "dealer" and row["offline_s"] > 0 and row["online_s"] > 0
    assert "crypten_s" not in row and "speedup" not in row


def test_versus_refuses_a_missing_crypten_python(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such file"):
        versus.main(["--crypten-python", str(tmp_path / "nowhere" / "python"), "--out", str(tmp_path)])
