"""Two training runs on different secret data give views that a two-sample test cannot tell apart.

Each party's audit log holds every value opened to it during training.  For two runs with the same public
settings (schema, split seed, shapes) but different bank data (rows 1-300 against rows 301-600 of the German
Credit file), the masked ring words each non-owner party saw are compared with a chi-square test of byte
homogeneity (255 degrees of freedom), and each party's words of both runs for uniformity.  Significance: the
test fails with probability at most 1e-6 when the views are identically distributed and uniform (1e-6 / 4 for
each of the four checks).  Party 0 also receives the test
predictions (and here no loss), which are outputs, not views of the inputs, and are left out.
"""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from smpc.loan.schema import Schema, embedded_dataset, load_csv
from tests.support.statistics import chi_square_critical, homogeneity_statistic, uniformity_failures
from tests.smpc.test_cli import _env

ALPHA = 1e-6


def _masked_words(audit: Path, rank: int) -> np.ndarray:
    words = []
    for line in (audit / f"audit-party{rank}.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["op"] != "reveal" and record["dtype"] == "int64":
            words.append(np.frombuffer(base64.b64decode(record["values"]), dtype=np.int64))
    return np.concatenate(words).view(np.uint64)


def test_views_of_two_different_data_sets_are_indistinguishable(tmp_path: Path) -> None:
    with embedded_dataset().open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, rows_all = load_csv(embedded_dataset())
    Schema.infer(header, rows_all, "creditability", "bad").save(tmp_path / "schema.json")
    for name, body in (("first", rows[1:301]), ("second", rows[301:601])):
        with (tmp_path / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(rows[0])
            writer.writerows(body)
        done = subprocess.run([sys.executable, "-m", "smpc", "train", "--data", f"{name}.csv", "--schema",
                               "schema.json", "--epochs", "2", "--audit", f"audit-{name}"], cwd=tmp_path,
                              env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    critical = chi_square_critical(255, ALPHA / 4)
    for rank in (1, 2):
        first = _masked_words(tmp_path / "audit-first", rank)
        second = _masked_words(tmp_path / "audit-second", rank)
        assert first.size == second.size > 100_000  # the same protocol, the same shapes
        statistic = homogeneity_statistic(first, second)
        assert statistic < critical, f"party {rank}: chi-square {statistic:.1f} >= {critical:.1f}"
        assert uniformity_failures(np.concatenate([first, second]), ALPHA / 4) == []
