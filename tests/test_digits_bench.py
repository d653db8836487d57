"""python -m benchmarks.digits in its quick mode: the table has its three rows (central, fedavg split by digit,
MPC training on shares, which says "not yet" until autograd exists), the central CNN learns the digits, and the
federated owners' secure aggregation sent bytes that the JSON records as the table does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import digits


def test_quick_run_prints_the_table_and_central_training_learns(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits.json"
    assert digits.main(["--quick", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| method | test accuracy | seconds | bytes per party | note |"
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert [row[0] for row in cells] == ["central plain torch", "fedavg, split by digit", "MPC training on shares"]
    assert all(len(row) == 5 for row in cells)
    rows = json.loads(out.read_text())
    central, fedavg, mpc = rows
    assert central["accuracy"] >= 0.9 and central["bytes_per_party"] == 0
    assert 0.0 <= fedavg["accuracy"] <= 1.0 and fedavg["bytes_per_party"] > 0
    assert cells[1][1] == f"{fedavg['accuracy']:.4f}" and cells[1][3] == f"{fedavg['bytes_per_party']:,d}"
    assert mpc["accuracy"] is None and cells[2][1:4] == ["not yet"] * 3


def test_bad_settings_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        digits.main(["--rounds", "0"])
    assert exited.value.code == 2
    assert "must be positive" in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_central_model_on_shares_predicts_as_in_plain() -> None:
    """--inference's row: the trained CNN's forward pass on shares (smpc.nn.functional) reaches the plain
    accuracy on the test rows, give or take a few near-tied images (fixed-point error), and sends bytes."""
    data = digits.load_digits()
    train_rows, test_rows = digits.stratified_split(data.labels, 0.3, 0)
    with digits.single_threaded():
        central, model = digits.central_row(data.subset(train_rows), data.subset(test_rows),
                                            digits.Settings(epochs=digits.QUICK["epochs"]))
        secure = digits.inference_row(model, data.subset(test_rows))
    assert central.accuracy is not None and secure.accuracy is not None
    assert abs(secure.accuracy - central.accuracy) <= 0.01
    assert secure.bytes_per_party is not None and secure.bytes_per_party > 0
