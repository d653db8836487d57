"""Results where they are needed, as separate `smpc` processes on 127.0.0.1 (three banks, replicated protocol):
`smpc party --data --report` without a schema file (the parties agree it: what `Schema.infer` gives on all
their rows) writes each party's report (the test figures on party 0 only), `smpc reveal-model --out model.pt`
and `smpc predict` score raw rows in plain torch as the revealed weights do by hand, and `smpc party --predict`
scores one bank's rows on the shared model: only that bank receives the predictions, the others' audit logs
hold only uniformly masked openings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from smpc.cli import main
from smpc.loan.model_files import combine_shares
from smpc.loan.schema import Schema, load_csv
from tests.support.cli import finish, make_roster, start_smpc
from tests.support.loan import audit_records, audited_words, bank_files
from tests.support.models import by_hand
from tests.support.statistics import ALPHA, uniformity_failures

pytestmark = pytest.mark.processes

#: The only masked openings inference makes (products, truncations, the sigmoid's comparisons).
MASKED_OPENINGS = {"mul", "matmul", "truncate", "compare", "and", "bit conversion", "helper comparison"}


def _probabilities(path: Path) -> np.ndarray:
    with path.open(newline="") as handle:
        return np.array([float(row["probability"]) for row in csv.DictReader(handle)])


def _parties(tmp_path: Path, per_rank: dict[int, list[str]]) -> list[tuple[int, str, str]]:
    processes = [start_smpc("party", "--rank", str(rank), "--roster", "roster.json", "--key", f"party{rank}.key",
                            *per_rank[rank], cwd=tmp_path) for rank in range(3)]
    outcomes = finish(processes, timeout=240)
    for code, out, err in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    return outcomes


def test_reports_revealed_model_and_private_inference(tmp_path: Path) -> None:
    make_roster(tmp_path, dealer=False)
    banks = bank_files(tmp_path)
    # No --schema: the parties agree it from their rows, and it is what infer gives on all their rows together.
    _parties(tmp_path, {rank: ["--data", banks[rank].name, "--epochs", "1", "--out", "model", "--report",
                               f"report{rank}.json"] for rank in range(3)})
    reports = [json.loads((tmp_path / f"report{rank}.json").read_text()) for rank in range(3)]
    assert 0.0 < reports[0]["secure"]["auc"] <= 1.0 and reports[0]["rows"]["test"] > 0
    for rank, report in enumerate(reports):
        assert report["rank"] == rank and report["protocol"] == "replicated" and report["bytes_sent"] > 0
        assert report["rounds"] > 0 and report["rows"]["train"] == reports[0]["rows"]["train"]
        assert rank == 0 or "secure" not in report and "test" not in report["rows"]

    files = sorted((tmp_path / "model").glob("party*.npz"))
    # The model owner's two steps, in this process (the commands start no party).
    assert main(["reveal-model", *map(str, files), "--out", str(tmp_path / "model.pt")]) == 0
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--data", str(banks[1]), "--out",
                 str(tmp_path / "plain.csv")]) == 0
    every = [load_csv(bank) for bank in banks]
    schema = Schema.infer(every[0][0], [row for _, rows in every for row in rows], "creditability", None)
    assert Schema.from_dict(combine_shares([str(path) for path in files])[0]["schema"]) == schema
    rows = every[1][1]
    features, _ = schema.encode(rows)
    plain = _probabilities(tmp_path / "plain.csv")
    assert np.abs(plain - by_hand(files, features)).max() < 1e-6

    helper = ["--predict", "--model-shares", "model", "--audit", "audit"]
    outcomes = _parties(tmp_path, {0: helper, 1: [*helper, "--data", "bank1.csv", "--out", "secure.csv"], 2: helper})
    assert all(f"{len(rows)} rows of 1 owner(s) (parties 1)" in out for _, out, _ in outcomes)
    assert np.abs(_probabilities(tmp_path / "secure.csv") - plain).max() < 1e-3
    for rank in range(3):
        records = audit_records(tmp_path / "audit", rank)
        assert [r["count"] for r in records if r["op"] == "reveal"] == ([len(rows)] if rank == 1 else [])
        masked = [r for r in records if r["op"] != "reveal"]
        assert {r["op"] for r in masked} <= MASKED_OPENINGS
        words = [audited_words(r) for r in masked if r["dtype"] == "int64"]
        if words:  # the replicated family's party 0 makes the helper's material and opens nothing
            assert uniformity_failures(np.concatenate(words).view(np.uint64), ALPHA / 3) == []
