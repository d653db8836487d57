"""`smpc reveal-model --out model.pt` and `smpc predict`, in process: the TorchScript model on raw rows gives the
revealed weights applied by hand to the encoded rows; a bad CSV or model file gets one line naming what to fix;
`smpc party --predict` refuses wrong options and wrong share files before it connects."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from smpc.cli import main
from smpc.loan.rows import schema_columns
from smpc.loan.schema import Schema
from tests.support.harness import REPLICATED, Parties
from tests.support.loan import write_csv
from tests.support.models import by_hand, write_model_shares


def _reveal(tmp_path: Path, parties: Parties = REPLICATED, hidden: int = 8, *, private: bool = False
            ) -> tuple[Schema, list[dict[str, str]], list[Path]]:
    schema, rows = write_model_shares(tmp_path / "model", parties, hidden, private=private)
    files = sorted((tmp_path / "model").glob("party*.npz"))
    assert main(["reveal-model", *map(str, files), "--out", str(tmp_path / "model.pt")]) == 0
    return schema, rows, files


def _rows_csv(path: Path, schema: Schema, rows: list[dict[str, str]], *, label: bool) -> Path:
    """``rows`` as a CSV whose columns are in an order of their own (reversed), with or without the label."""
    columns = list(reversed(schema_columns(schema))) + ([schema.label] if label else [])
    return write_csv(path, columns, [[row[column] for column in columns] for row in rows])


def _read_predictions(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    with path.open(newline="") as handle:
        table = list(csv.reader(handle))
    return table[0], np.array([float(row[2]) for row in table[1:]]), [int(row[1]) for row in table[1:]]


@pytest.mark.parametrize("hidden", [0, 8], ids=["logistic", "mlp"])
def test_predict_is_the_revealed_weights_applied_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         hidden: int) -> None:
    schema, rows, files = _reveal(tmp_path, hidden=hidden)
    data = _rows_csv(tmp_path / "new.csv", schema, rows, label=True)
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--data", str(data), "--out", str(out)]) == 0
    header, probabilities, lines = _read_predictions(out)
    assert header == ["row", "line", "probability"] and lines == list(range(2, len(rows) + 2))
    features, _ = schema.encode(rows)
    assert np.abs(probabilities - by_hand(files, features)).max() < 1e-6
    printed = capsys.readouterr().out
    assert "ROC AUC" in printed and f"wrote {len(rows)} predictions" in printed
    # Without --out: a summary and the first rows; a file without the label column prints no AUC.
    unlabelled = _rows_csv(tmp_path / "unlabelled.csv", schema, rows, label=False)
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--data", str(unlabelled)]) == 0
    printed = capsys.readouterr().out
    assert "ROC AUC" not in printed and f"{len(rows)} rows: mean probability" in printed
    assert f"row 1 (line 2): {probabilities[0]:.6f}" in printed


def test_a_model_trained_on_clipped_rows_clips_new_rows(tmp_path: Path) -> None:
    """A differentially private run trained on rows clipped to the declared scales: predict clips the same
    way (a duration beyond the scale scores as the scale itself) instead of refusing."""
    schema, rows, _ = _reveal(tmp_path, hidden=0, private=True)
    scale = dict(schema.numeric)["duration_in_month"]
    far, edge = dict(rows[0], duration_in_month=str(scale * 10)), dict(rows[0], duration_in_month=str(scale))
    data = _rows_csv(tmp_path / "rows.csv", schema, [far, edge], label=False)
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--data", str(data), "--out",
                 str(tmp_path / "p.csv")]) == 0
    _, probabilities, _ = _read_predictions(tmp_path / "p.csv")
    assert probabilities[0] == probabilities[1]


def _break(rows: list[list[str]], column: str, line: int, value: str) -> None:
    rows[line - 1][rows[0].index(column)] = value


def _drop(rows: list[list[str]], column: str) -> None:
    index = rows[0].index(column)
    for row in rows:
        del row[index]


@pytest.mark.parametrize(("change", "message"), [
    (lambda rows: _break(rows, "duration_in_month", 4, "1000"),
     "bad.csv, line 4, column 'duration_in_month': 1000 exceeds the schema's scale 128"),
    (lambda rows: _break(rows, "duration_in_month", 3, "twelve"),
     "bad.csv, line 3, column 'duration_in_month': 'twelve' is not a number"),
    (lambda rows: _break(rows, "purpose", 5, "spaceship"),
     "bad.csv, line 5, column 'purpose': 'spaceship' is not a category of the model's schema"),
    (lambda rows: _drop(rows, "age_in_years"),
     "bad.csv: column 'age_in_years' of the model's schema is missing"),
], ids=["beyond-scale", "not-a-number", "unknown-category", "missing-column"])
def test_bad_rows_get_one_line_naming_file_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           change: object, message: str) -> None:
    schema, rows, _ = _reveal(tmp_path, hidden=0)
    columns = schema_columns(schema)
    table = [columns] + [[row[column] for column in columns] for row in rows[:6]]
    change(table)  # type: ignore[operator]
    write_csv(tmp_path / "bad.csv", table[0], table[1:])
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--data", str(tmp_path / "bad.csv")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "weights.pt").write_bytes(b"not a TorchScript archive")
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    assert main(["predict", "--model", str(tmp_path / "weights.pt"), "--data", str(tmp_path / "rows.csv")]) == 2
    error = capsys.readouterr().err
    assert "weights.pt: not a model written by smpc reveal-model --out" in error and error.count("\n") == 1


def _roster(tmp_path: Path, *, dealer: bool) -> Path:
    names = ["party0", "party1", "party2"] + (["dealer"] if dealer else [])
    for name in names:
        assert main(["keygen", str(tmp_path / name)]) == 0
    args = ["roster", "--out", str(tmp_path / "roster.json"), "--session", "s"]
    for rank in range(3):
        args += ["--party", f"tcp://127.0.0.1:{47200 + rank}", str(tmp_path / f"party{rank}.pub")]
    if dealer:
        args += ["--dealer", "tcp://127.0.0.1:47203", str(tmp_path / "dealer.pub")]
    assert main(args) == 0
    return tmp_path / "roster.json"


@pytest.mark.parametrize(("extra", "dealer", "message"), [
    (["--model-shares", "model"], False, "--model-shares is for private inference: add --predict"),
    (["--predict"], False, "--predict needs --model-shares DIR"),
    (["--predict", "--model-shares", "nowhere"], False, "nowhere/party0.npz: no such file"),
    (["--predict", "--model-shares", "model", "--out", "p.csv"], False, "only a party that brings rows (--data)"),
    (["--report", "r.json"], False, "--report is written by the loan job (--data) or private inference"),
    (["--predict", "--model-shares", "model"], True, "the model was trained with protocol replicated, this session "
                                                     "has dealer"),
    (["--predict", "--model-shares", "model", "--data", "rows.csv"], False, "rows.csv: no such file"),
])
def test_party_predict_refuses_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, extra: list[str], dealer: bool,
                                                 message: str) -> None:
    """Each of these fails at once with one line (no peer is waited for: the roster's ports are never bound)."""
    monkeypatch.chdir(tmp_path)
    write_model_shares(tmp_path / "model", REPLICATED, 0)
    roster = _roster(tmp_path, dealer=dealer)
    capsys.readouterr()
    code = main(["party", "--rank", "0", "--roster", str(roster), "--key", str(tmp_path / "party0.key"),
                 "--connect-timeout", "5", *extra])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1, error
