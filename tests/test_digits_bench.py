"""python -m benchmarks.digits in its quick mode: the table has its three rows (central, fedavg split by digit,
MPC training on shares, which the quick mode stops after 3 batches), the central CNN learns the digits, and the
federated owners' secure aggregation and the training on shares sent bytes that the JSON records as the table
does.  The training on shares takes the same steps as plain torch (weights within 1e-3 after a few batches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import digits, digits_mpc


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
    assert 0.0 <= mpc["accuracy"] <= 1.0 and mpc["bytes_per_party"] > 0 and "3 batches only" in mpc["note"]
    assert cells[2][1] == f"{mpc['accuracy']:.4f}" and cells[2][3] == f"{mpc['bytes_per_party']:,d}"


def test_bad_settings_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        digits.main(["--rounds", "0"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        digits.main(["--mpc-batches", "0"])
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


#: Weights of the training on shares against plain torch's same steps: each step's gradients carry fixed-point
#: errors of a few 2^-16 per entry (truncations in the forward and backward products; log_softmax's 1e-4 +
#: 10 x 5.6e-4 on the output is the largest term, scaled by 1/32 in the mean loss), times lr 0.05, plus 2 u per
#: update; over 4 steps with momentum that stays far below 1e-3 (measured: about 5e-5).
WEIGHT_TOLERANCE = 1e-3


def plain_steps(model: torch.nn.Module, data: digits.Digits, settings: digits.Settings, steps: int) -> None:
    """Plain torch's first ``steps`` batches of ``benchmarks.digits.train_epochs`` (epoch 0), in place."""
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    for _, rows in zip(range(steps), digits_mpc.batches(len(data), settings.batch_size, [settings.seed, 0])):
        optimizer.zero_grad()
        torch.nn.functional.nll_loss(model(images[rows]), labels[rows]).backward()
        optimizer.step()


def test_training_on_shares_takes_plain_torchs_steps() -> None:
    """A few batches of the CNN trained on shares (owners' rows shared, one-hot labels, autograd through conv,
    relu, max pooling, linear, log_softmax; momentum SGD) end with the weights plain torch reaches in the same
    steps on the same rows in the same order, and they moved much more than the tolerance."""
    data = digits.load_digits()
    train_rows, _ = digits.stratified_split(data.labels, 0.3, 0)
    train = data.subset(train_rows)
    settings = digits.Settings(epochs=1, mpc_batches=4)
    with digits.single_threaded():
        shared, _, sent = digits.train_on_shares(train, settings)
        plain, initial = digits.seeded_model(0), digits.seeded_model(0)
        plain_steps(plain, digits.owners_in_order(train, settings), settings, 4)
    assert sent > 0
    for got, want, start in zip(*(model.state_dict().values() for model in (shared, plain, initial))):
        assert float((got - want).abs().max()) <= WEIGHT_TOLERANCE
        assert float((want - start).abs().max()) > 10 * WEIGHT_TOLERANCE
