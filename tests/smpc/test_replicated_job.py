"""The loan job in the replicated protocol, end to end: `smpc train --protocol replicated` on the embedded
data matches the plain reference; three `smpc party` processes on a roster without a dealer train, with no
dealer process anywhere, and exit cleanly; the share files record the protocol and combine."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import finish, make_roster, run_smpc, start_smpc
from tests.support.loan import audit_records, audited_words, bank_files, save_schema, schema_phase
from tests.support.statistics import bit_failures, uniformity_failures

#: Every opening a party of the replicated protocol learns during training: the helper sub-session's
#: two-party openings and the fused truncation's masked value.
MASKED_OPENINGS = {"mul", "matmul", "truncate", "compare", "and", "bit conversion", "helper comparison"}

pytestmark = pytest.mark.processes


def test_train_replicated_matches_the_plain_reference(tmp_path: Path) -> None:
    """The whole embedded data set, the job's defaults: secure AUC within 0.001 of plain torch's."""
    done = run_smpc("train", "--protocol", "replicated", "--report", "report.json", "--out", "model", cwd=tmp_path,
                    timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no dealer" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert abs(report["secure"]["auc"] - report["plain"]["auc"]) <= 0.001, report
    files = sorted(str(p) for p in (tmp_path / "model").glob("party*.npz"))
    shown = run_smpc("reveal-model", *files, cwd=tmp_path)
    assert shown.returncode == 0 and "0.weight" in shown.stdout, shown.stderr


def test_three_parties_without_a_dealer(tmp_path: Path) -> None:
    """`smpc roster` without --dealer, then three `smpc party --data` processes: they train and exit 0; the
    roster has no dealer, so there is no dealer to start (and `smpc dealer` refuses it)."""
    roster = make_roster(tmp_path, dealer=False)
    assert "dealer" not in json.loads(roster.read_text())
    refused = run_smpc("dealer", "--roster", roster.name, "--key", "party0.key", cwd=tmp_path)
    assert refused.returncode == 2 and "no dealer" in refused.stderr
    schema = save_schema(tmp_path / "schema.json")
    banks = bank_files(tmp_path)
    processes = [start_smpc("party", "--rank", str(rank), "--roster", roster.name, "--key", f"party{rank}.key",
                            "--data", banks[rank].name, "--schema", schema.name, "--epochs", "2", cwd=tmp_path)
                 for rank in range(3)]
    outcomes = finish(processes)
    for code, out, err in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    auc_line = next(line for line in outcomes[0][1].splitlines() if "ROC AUC" in line)
    assert 0.5 < float(auc_line.split("ROC AUC")[1].split(",")[0]) <= 1.0


def test_a_roster_without_a_dealer_is_for_three_parties(tmp_path: Path) -> None:
    for name in ("party0", "party1"):
        assert run_smpc("keygen", name, cwd=tmp_path).returncode == 0
    done = run_smpc("roster", "--out", "r.json", "--session", "s", "--party", "tcp://127.0.0.1:5001", "party0.pub",
                    "--party", "tcp://127.0.0.1:5002", "party1.pub", cwd=tmp_path)
    assert done.returncode == 2 and "exactly 3 parties" in done.stderr


def test_replicated_audit_dp_and_fedavg(tmp_path: Path) -> None:
    """The audit log in the replicated protocol: parties 1 and 2 learn only masked openings of the helper
    sub-session and of the fused truncation (uniform words), party 0 (the helper) nothing but its test
    predictions and the helped comparisons' bits, each masked by a coin it lacks (fair coins, at 10^-6); DP-SGD
    (secret sampling) and DP fedavg run and spend at most their target."""
    quick = ["--protocol", "replicated", "--max-rows", "240", "--epochs", "2"]
    audited = run_smpc("train", *quick, "--audit", "audit", cwd=tmp_path, timeout=300)
    assert audited.returncode == 0, audited.stderr
    for rank in range(3):
        records = audit_records(tmp_path / "audit", rank)
        records = records[len(schema_phase(records)):]  # the joint schema's agreement (no --schema)
        reveals = [r for r in records if r["op"] == "reveal"]
        masked = [r for r in records if r["op"] != "reveal"]
        assert {r["op"] for r in masked} <= MASKED_OPENINGS, {r["op"] for r in masked}
        if rank == 0:
            assert {(r["op"], r["dtype"]) for r in masked} == {("helper comparison", "uint8")}
            assert len(reveals) == 1 and reveals[0]["count"] == 72
            bits = np.concatenate([np.frombuffer(base64.b64decode(r["values"]), dtype=np.uint8) for r in masked])
            assert bits.size >= 1000 and bit_failures(bits, 1e-6) == []
        else:
            assert reveals == [] and masked
            words = np.concatenate([audited_words(r) for r in masked if r["dtype"] == "int64"])
            assert uniformity_failures(words.view(np.uint64), 1e-6) == []
    for mode, extra in (("secure", ["--dp-epsilon", "8"]), ("fedavg", ["--rounds", "2", "--local-steps", "2",
                                                                       "--dp-epsilon", "3"])):
        done = run_smpc("train", *quick, "--mode", mode, *extra, "--report", f"{mode}.json", cwd=tmp_path,
                        timeout=300)
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / f"{mode}.json").read_text())
        assert 0 < report["epsilon_spent"] <= float(extra[-1]), report
