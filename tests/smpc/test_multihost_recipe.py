"""The README's multi-host recipe ("Several hosts"), step by step, on 127.0.0.1: four folders play host A, B
and C (the banks, A the model owner) and host D (the dealer), and files move between them only where the
README says they do.  The banks' CSVs differ as real banks' do (one bank's maximum of duration_in_month is 4x
the others', one bank alone has the purpose 'retraining'), no schema file is written: the parties agree it at
start-up; party 0 writes its report, the model owner reveals the model to a TorchScript file and `smpc predict`
scores raw rows with it exactly as the revealed weights do by hand."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from smpc.loan.model_files import combine_shares
from smpc.loan.schema import Schema, load_csv
from tests.support.cli import finish, free_ports, run_smpc, start_smpc
from tests.support.loan import embedded_rows, write_csv
from tests.support.models import by_hand

pytestmark = pytest.mark.processes

#: Rows per bank (kept small: this is a test of the recipe, not of the model).
ROWS_PER_BANK = 110


def _bank_rows() -> tuple[list[str], list[list[list[str]]], list[list[str]]]:
    """(header, each bank's rows, rows for scoring): bank 1 takes loans longer than 18 months (up to 72: its
    maximum is 4x the others' 18), bank 2 alone the purpose 'retraining'; the rest is dealt in turn."""
    rows = embedded_rows()
    header, body = rows[0], rows[1:]
    duration, purpose = header.index("duration_in_month"), header.index("purpose")
    banks: list[list[list[str]]] = [[], [], []]
    for row in body:
        if float(row[duration]) > 18:
            bank = 1
        elif row[purpose] == "retraining":
            bank = 2
        else:
            bank = 0 if len(banks[0]) <= len(banks[2]) else 2
        banks[bank].append(row)
    longest = max(banks[1], key=lambda row: float(row[duration]))
    retraining = [row for row in banks[2] if row[purpose] == "retraining"]
    chosen = [banks[0][:ROWS_PER_BANK], [longest, *banks[1][:ROWS_PER_BANK - 1]],
              [*retraining, *banks[2][:ROWS_PER_BANK - len(retraining)]]]
    used = {id(row) for bank in chosen for row in bank}
    unseen = [row for row in body if id(row) not in used and float(row[duration]) <= 72][:60]
    return header, chosen, unseen


def test_the_readme_multi_host_recipe_with_a_dealer(tmp_path: Path) -> None:
    host = {name: tmp_path / f"host{name}" for name in "ABCD"}
    for folder in host.values():
        folder.mkdir()
    banks = {0: "A", 1: "B", 2: "C"}

    # 1. Each host makes its keypair and publishes only the .pub file (sent to host A, which writes the roster).
    for rank, name in banks.items():
        assert run_smpc("keygen", f"party{rank}", cwd=host[name]).returncode == 0
    assert run_smpc("keygen", "dealer", cwd=host["D"]).returncode == 0
    for rank, name in banks.items():
        if name != "A":
            shutil.copy(host[name] / f"party{rank}.pub", host["A"])
    shutil.copy(host["D"] / "dealer.pub", host["A"])

    # 2. Host A writes the roster and sends it to every host.
    ports = free_ports(4)
    roster = ["roster", "--out", "roster.json", "--session", "loan-2026"]
    for rank in range(3):
        roster += ["--party", f"tcp://127.0.0.1:{ports[rank]}", f"party{rank}.pub"]
    roster += ["--dealer", f"tcp://127.0.0.1:{ports[3]}", "dealer.pub"]
    done = run_smpc(*roster, cwd=host["A"])
    assert done.returncode == 0, done.stderr
    for name in "BCD":
        shutil.copy(host["A"] / "roster.json", host[name])

    # 3. Each bank holds its own CSV; no schema file anywhere.
    header, rows, unseen = _bank_rows()
    for rank, name in banks.items():
        write_csv(host[name] / f"bank{rank}.csv", header, rows[rank])

    # 4. The dealer and the three banks start, in any order; they agree the schema, train, write shares.
    processes = [start_smpc("dealer", "--roster", "roster.json", "--key", "dealer.key", cwd=host["D"])]
    for rank, name in banks.items():
        processes.append(start_smpc(
            "party", "--rank", str(rank), "--roster", "roster.json", "--key", f"party{rank}.key",
            "--data", f"bank{rank}.csv", "--epochs", "1", "--out", "model", "--report", "report.json",
            cwd=host[name]))
    outcomes = finish(processes, timeout=300)
    for code, out, err in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    reports = {rank: json.loads((host[name] / "report.json").read_text()) for rank, name in banks.items()}
    assert 0.0 < reports[0]["secure"]["auc"] <= 1.0 and reports[0]["rows"]["test"] > 0
    assert all("secure" not in reports[rank] for rank in (1, 2))

    # 5. Hosts B and C send their share files to host A (an authenticated channel of their choosing: here a copy).
    for rank, name in banks.items():
        if name != "A":
            shutil.copy(host[name] / "model" / f"party{rank}.npz", host["A"] / "model")

    # 6. Host A reveals the model and scores new applicants' raw rows with it.
    write_csv(host["A"] / "new_applicants.csv", header, unseen)
    files = [f"model/party{rank}.npz" for rank in range(3)]
    done = run_smpc("reveal-model", *files, "--out", "model.pt", cwd=host["A"])
    assert done.returncode == 0, done.stderr
    done = run_smpc("predict", "--model", "model.pt", "--data", "new_applicants.csv", "--out",
                    "predictions.csv", cwd=host["A"])
    assert done.returncode == 0, done.stderr

    # The schema the banks agreed: the joint maxima's powers of two and the union of the categories.
    meta, _ = combine_shares([str(host["A"] / path) for path in files])
    schema = Schema.from_dict(meta["schema"])
    assert dict(schema.numeric)["duration_in_month"] == 128.0  # bank 1's 72, not banks 0 and 2's 18 (32)
    assert "retraining" in dict(schema.categorical)["purpose"]  # bank 2's alone
    _, new_rows = load_csv(host["A"] / "new_applicants.csv")
    features, _ = schema.encode(new_rows)
    with (host["A"] / "predictions.csv").open(newline="") as handle:
        predicted = np.array([float(row["probability"]) for row in csv.DictReader(handle)])
    expected = by_hand([host["A"] / path for path in files], features)
    assert len(predicted) == len(unseen) and np.abs(predicted - expected).max() < 1e-6

