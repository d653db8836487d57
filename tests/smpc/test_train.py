"""The loan job end to end: `smpc train` as processes over CurveZMQ, its report, model share files, the audit
log, and `smpc party --data` / `smpc dealer` started separately with one CSV per bank."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import finish, make_roster, run_smpc, start_smpc
from tests.support.loan import audit_records, audited_words, bank_files, save_schema, schema_phase
from tests.support.statistics import uniformity_failures

QUICK = ["--max-rows", "240", "--epochs", "2", "--batch-size", "32"]
#: Every opening of a training step is a masked value of one of these protocols.
MASKED_OPENINGS = {"mul", "matmul", "truncate", "compare", "and", "bit conversion", "helper comparison"}

#: Every test here starts OS processes (smpc commands, or parties and a dealer as processes).
pytestmark = pytest.mark.processes


def _train(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_smpc("train", *QUICK, *extra, cwd=tmp_path, timeout=300)


def test_train_reports_secure_next_to_plain_and_writes_model_shares(tmp_path: Path) -> None:
    done = _train(tmp_path, "--report", "report.json", "--out", "model", "--reveal-to", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"secure", "plain", "seconds", "bytes_sent_per_party", "rounds", "rows"}
    assert report["rows"] == {"train": 168, "test": 72}
    assert len(report["bytes_sent_per_party"]) == 3 and min(report["bytes_sent_per_party"]) > 0
    assert abs(report["secure"]["auc"] - report["plain"]["auc"]) <= 0.02, report
    assert abs(report["secure"]["accuracy"] - report["plain"]["accuracy"]) <= 0.03, report
    assert "batch" in done.stderr and "left" in done.stderr  # progress
    files = sorted(str(p) for p in (tmp_path / "model").glob("party*.npz"))
    assert len(files) == 3
    with np.load(files[1], allow_pickle=False) as archive:
        assert archive["share/0.weight"].dtype == np.int64  # shares, never plain floats
    combined = run_smpc("reveal-model", *files, "--out", "model.pt", cwd=tmp_path, timeout=120)
    assert combined.returncode == 0, combined.stderr
    # The weights revealed to party 0 at the end equal the combination of the share files.
    revealed = next(line for line in done.stdout.splitlines() if "revealed to party 0" in line)
    first_weight = float(revealed.split("[", 1)[1].split(",", 1)[0])
    shown = next(line for line in combined.stdout.splitlines() if line.strip().startswith("0.weight"))
    assert abs(float(shown.split("[", 1)[1].split(",", 1)[0]) - first_weight) < 1e-3
    incomplete = run_smpc("reveal-model", *files[:2], cwd=tmp_path, timeout=120)
    assert incomplete.returncode == 2 and "all 3 parties" in incomplete.stderr


@pytest.mark.parametrize("show_loss", [False, True], ids=["hidden-loss", "shown-loss"])
def test_training_opens_only_masks(tmp_path: Path, show_loss: bool) -> None:
    """Every value a party learns during training is a masked opening (uniform ring words or bits); the only
    plain results are party 0's test predictions, and the losses only with --show-loss."""
    # The dealer family's views (the replicated family's: test_replicated_job.py)
    done = _train(tmp_path, "--protocol", "dealer", "--audit", "audit", *(["--show-loss"] if show_loss else []))
    assert done.returncode == 0, done.stdout + done.stderr
    steps = 2 * 6  # epochs x batches of 168 training rows
    for rank in range(3):
        records = audit_records(tmp_path / "audit", rank)
        records = records[len(schema_phase(records)):]  # the joint schema's agreement (no --schema)
        reveals = [r for r in records if r["op"] == "reveal"]
        masked = [r for r in records if r["op"] != "reveal"]
        assert {r["op"] for r in masked} <= MASKED_OPENINGS, {r["op"] for r in masked}
        if rank == 0:
            assert len(reveals) == 1 + (steps if show_loss else 0)  # the predictions (+ one loss per step)
            assert reveals[-1]["count"] == 72
        else:
            assert reveals == []
        words = np.concatenate([audited_words(r) for r in masked if r["dtype"] == "int64"])
        assert uniformity_failures(words.view(np.uint64), 1e-6) == []


def test_parties_and_dealer_started_separately_each_with_its_own_rows(tmp_path: Path) -> None:
    """Four commands as on four hosts; each bank reads only its own CSV; they agree on the public schema."""
    roster = make_roster(tmp_path)
    schema = save_schema(tmp_path / "schema.json")
    banks = bank_files(tmp_path)
    processes = [start_smpc("dealer", "--roster", roster.name, "--key", "dealer.key", cwd=tmp_path)]
    for rank in range(3):
        processes.append(start_smpc("party", "--rank", str(rank), "--roster", roster.name, "--key",
                                    f"party{rank}.key", "--data", banks[rank].name, "--schema", schema.name,
                                    "--epochs", "2", cwd=tmp_path))
    outcomes = finish(processes)
    for code, out, err in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    owner_output = outcomes[1][1]
    auc_line = next(line for line in owner_output.splitlines() if "ROC AUC" in line)
    assert 0.5 < float(auc_line.split("ROC AUC")[1].split(",")[0]) <= 1.0


def test_joint_init_is_unpredictable_even_with_the_same_seed(tmp_path: Path) -> None:
    """--joint-init draws every party's contribution from the OS's CSPRNG, not from --seed (which every party
    knows): two runs with the same seed start from, hence end with, different models."""
    revealed = []
    for run in ("first", "second"):
        done = run_smpc("train", "--joint-init", "--seed", "0", "--max-rows", "200", "--epochs", "1", "--out", run,
                        cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        files = sorted(str(p) for p in (tmp_path / run).glob("party*.npz"))
        shown = run_smpc("reveal-model", *files, cwd=tmp_path, timeout=120)
        assert shown.returncode == 0, shown.stderr
        revealed.append([line for line in shown.stdout.splitlines() if "weight" in line])
    assert revealed[0] and revealed[0] != revealed[1]
