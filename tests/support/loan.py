"""What the loan-job tests feed `smpc train` / `smpc party` and read back: bank CSV files cut from the embedded
German Credit data, the public schema, and the audit logs of values opened to each party."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np

from smpc.loan.schema import Schema, embedded_dataset, load_csv


def embedded_rows() -> list[list[str]]:
    """The embedded data set as CSV rows, the header first."""
    with embedded_dataset().open(newline="") as handle:
        return list(csv.reader(handle))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def bank_files(folder: Path) -> list[Path]:
    """``bank0.csv`` .. ``bank2.csv`` in ``folder``: the first 300 rows, bank b holding every third from row b."""
    rows = embedded_rows()
    header, body = rows[0], rows[1:301]
    return [write_csv(folder / f"bank{bank}.csv", header, body[bank::3]) for bank in range(3)]


def save_schema(path: Path) -> Path:
    """The public schema of the embedded data (label creditability, positive value bad), saved to ``path``."""
    header, rows = load_csv(embedded_dataset())
    Schema.infer(header, rows, "creditability", "bad").save(path)
    return path


def audit_records(folder: Path, rank: int) -> list[dict]:
    """Party ``rank``'s audit log in ``folder``: one record per value opened to it."""
    return [json.loads(line) for line in (folder / f"audit-party{rank}.jsonl").read_text().splitlines()]


def schema_phase(records: list[dict], numeric_columns: int = 7) -> list[dict]:
    """The records the joint schema's agreement left at the head of an audit log (a run without --schema),
    checked: the other parties' public summaries (UTF-8 JSON), masked openings, and the reveals of
    ``secret_union`` (the longest category's length; per attempt the union's buckets, the collision flags and
    the strings of the columns without one, until no column collides) and of ``joint_exponents``
    (``numeric_columns`` exponents), which ends the phase.  The caller checks the rest as before."""
    reveals = [index for index, record in enumerate(records) if record["op"] == "reveal"]
    position = 1  # reveals[0]: the longest length; then per attempt the buckets, the collision flags and,
    collided = audited_words(records[reveals[position + 1]])  # unless every column collided, the strings
    while collided.any():  # a column collided: another attempt
        position += 2 if collided.all() else 3
        collided = audited_words(records[reveals[position + 1]])
    end = reveals[position + 3] + 1
    phase = records[:end]
    assert [r["dtype"] for r in phase if r["op"] == "schema summary"] == ["uint8", "uint8"], phase
    assert phase[-1]["count"] == numeric_columns and phase[-1]["dtype"] == "int64", phase[-1]
    assert {r["op"] for r in phase[:-1]} <= {"schema summary", "reveal", "compare", "and", "bit conversion", "mul",
                                                "helper comparison"}
    return phase


def audited_words(record: dict) -> np.ndarray:
    """The int64 ring words an audit record of dtype int64 holds."""
    return np.frombuffer(base64.b64decode(record["values"]), dtype=np.int64)


def masked_words(folder: Path, rank: int) -> np.ndarray:
    """Every masked ring word opened to party ``rank`` (all int64 openings but reveals), as uint64."""
    words = [audited_words(record) for record in audit_records(folder, rank)
             if record["op"] != "reveal" and record["dtype"] == "int64"]
    return np.concatenate(words).view(np.uint64)
