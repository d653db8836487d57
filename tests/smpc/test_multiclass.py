"""Multi-class loan jobs (issue 16): the macro one-vs-rest AUC against a brute-force count, the schema of a
label with more than two values, the refusals, a short softmax regression on shares next to its plain
reference, and `smpc train --data digits --label digit` as processes."""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from smpc.digits import embedded_digits
from smpc.loan.config import TrainConfig
from smpc.loan.job import train_party
from smpc.loan.metrics import class_accuracy, macro_auc
from smpc.loan.model_files import combine_shares
from smpc.loan.multiclass import check_job, onehot
from smpc.loan.plain import train_plain
from smpc.loan.predict_commands import cmd_party_predict, cmd_predict, write_model
from smpc.loan.schema import DataError, Schema, embedded_schema, load_table
from tests.support.cli import run_smpc
from tests.support.harness import run_parties


def _brute_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 1/2 P(equal), by counting every pair."""
    pairs = [(p, n) for p, n in itertools.product(scores[positive], scores[~positive])]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_macro_auc_is_the_mean_of_pairwise_one_vs_rest_counts_with_ties() -> None:
    generator = np.random.default_rng(5)
    labels = generator.integers(0, 4, size=60)
    # Scores rounded to one decimal: many ties within and across classes.
    probabilities = np.round(generator.random((60, 4)) + 0.3 * np.eye(4)[labels], 1)
    expected = np.mean([_brute_auc(probabilities[:, k], labels == k) for k in range(4)])
    assert macro_auc(probabilities, labels) == pytest.approx(expected, abs=1e-12)
    # A class with no test row has no AUC: the mean runs over the others.
    labels[labels == 3] = 2
    expected = np.mean([_brute_auc(probabilities[:, k], labels == k) for k in range(3)])
    assert macro_auc(probabilities, labels) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(macro_auc(probabilities, np.zeros(60)))


def test_class_accuracy_takes_the_most_probable_class() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])
    assert class_accuracy(probabilities, np.array([1, 0, 0, 1])) == 0.5  # the tie goes to class 0
    assert onehot(np.array([2.0, 0.0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]


def _digits(tmp_path: Path, rows: int) -> Path:
    lines = embedded_digits().read_text().splitlines()[: rows + 1]
    path = tmp_path / "digits.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_label_of_many_values_without_positive_is_multi_class(tmp_path: Path) -> None:
    table = load_table(_digits(tmp_path, 100))
    schema = Schema.infer(table.header, table.rows, "digit", None)
    assert schema.classes == tuple("0123456789") and schema.n_outputs == 10
    features, labels = schema.encode(table.rows)
    assert features.shape == (100, 64) and labels.tolist() == [float(row["digit"]) for row in table.rows]
    assert Schema.from_dict(schema.to_dict()) == schema and "positive" not in schema.to_dict()
    binary = Schema.infer(table.header, table.rows, "digit", "3")  # --positive keeps its meaning
    assert binary.classes == () and "classes" not in binary.to_dict() and binary.n_outputs == 1
    with pytest.raises(DataError, match=r"digit='x' is not a class of the schema"):
        schema.encode([{**table.rows[0], "digit": "x"}])


def test_multi_class_refusals_are_one_line(tmp_path: Path) -> None:
    data = str(_digits(tmp_path, 100))
    table = load_table(data)
    schema = Schema.infer(table.header, table.rows, "digit", None)
    with pytest.raises(DataError, match="multi-class jobs train in secure mode only"):
        check_job(TrainConfig(data=data, label="digit", positive=None, mode="fedavg"), schema)
    with pytest.raises(DataError, match="differential privacy trains a binary label only"):
        check_job(TrainConfig(data=data, label="digit", positive=None, dp_epsilon=1.0, schema="s.json"), schema)
    with pytest.raises(DataError, match="--out writes share files of logreg and mlp models only"):
        check_job(TrainConfig(data=data, label="digit", positive=None, model="cnn", out="model"), schema)
    with pytest.raises(DataError, match="--model cnn needs image rows.*categorical"):
        check_job(TrainConfig(model="cnn"), Schema.load(embedded_schema()))
    numeric = Schema.build("digit", "", [(f"p{i}", 16.0) for i in range(60)], [], schema.classes)
    with pytest.raises(DataError, match="--model cnn needs image rows.*not 60 features"):
        check_job(TrainConfig(data=data, label="digit", positive=None, model="cnn"), numeric)
    check_job(TrainConfig(data=data, label="digit", positive=None, model="cnn"), schema)  # 64 = 8 x 8


def test_softmax_regression_on_shares_matches_plain_and_predicts_classes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Two epochs on 240 digits: the shared model's test accuracy and AUC are the plain reference's (same
    split, weights, batches) up to fixed-point error, far above chance (0.1); its share files, combined into
    the plain model (reveal-model), score rows with a class and per-class probabilities (predict)."""
    data = _digits(tmp_path, 240)
    config = TrainConfig(data=str(data), label="digit", positive=None, epochs=2, out=str(tmp_path / "model"))
    results = run_parties(functools.partial(train_party, config=config), 3, protocol="replicated")
    plain = train_plain(config, 3)
    owner = results[0]
    assert owner.classes == 10 and plain.classes == 10 and owner.test_rows == plain.test_rows
    assert results[1].auc is None  # only party 0 holds the test rows
    assert plain.accuracy > 0.6, plain
    assert abs(owner.accuracy - plain.accuracy) <= 0.03 and abs(owner.auc - plain.auc) <= 0.01, (owner, plain)
    meta, values = combine_shares(sorted((tmp_path / "model").glob("party*.npz")))
    write_model(meta, values, tmp_path / "model.pt")
    cmd_predict(argparse.Namespace(model=str(tmp_path / "model.pt"), data=str(data), out=str(tmp_path / "p.csv")))
    printed = capsys.readouterr().out
    accuracy = float(printed.split("accuracy ")[1].split(",")[0])
    assert accuracy > 0.6, printed  # the 240 rows, training rows included
    written = list(csv.reader((tmp_path / "p.csv").open()))
    assert written[0] == ["row", "line", "class", *(f"probability_{digit}" for digit in range(10))]
    first = [float(value) for value in written[1][3:]]
    assert len(written) == 241 and abs(sum(first) - 1.0) < 1e-9
    assert written[1][2] == str(int(np.argmax(first)))
    with pytest.raises(DataError, match="a multi-class model; private inference scores binary models only"):
        cmd_party_predict(argparse.Namespace(model_shares=str(tmp_path / "model"), rank=0, out=None, data=None))


@pytest.mark.processes
def test_smpc_train_digits_reports_macro_auc_and_accuracy(tmp_path: Path) -> None:
    _digits(tmp_path, 300)
    done = run_smpc("train", "--data", "digits.csv", "--label", "digit", "--model", "logreg", "--epochs", "1",
                    "--max-rows", "300", "--report", "report.json", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["classes"] == 10 and report["auc"] == "macro one-vs-rest"
    assert report["secure"]["accuracy"] > 0.5 and report["secure"]["auc"] > 0.9, report  # chance: 0.1, 0.5
    assert abs(report["secure"]["accuracy"] - report["plain"]["accuracy"]) <= 0.03, report
    assert "softmax regression, 10 classes" in done.stdout and "macro AUC" in done.stdout


def test_cnn_on_shares_takes_the_plain_cnns_steps(tmp_path: Path) -> None:
    """The CNN (rows of 64 pixels as 1 x 8 x 8 images) for one epoch of 5 batches on 100 digits: the shared
    model's test figures are the plain reference's up to fixed-point error."""
    config = TrainConfig(data=str(_digits(tmp_path, 100)), label="digit", positive=None, model="cnn", epochs=1,
                         batch_size=16)
    owner = run_parties(functools.partial(train_party, config=config), 3, protocol="replicated")[0]
    plain = train_plain(config, 3)
    assert owner.classes == 10 and owner.test_rows == plain.test_rows == 30
    assert abs(owner.accuracy - plain.accuracy) <= 0.04 and abs(owner.auc - plain.auc) <= 0.02, (owner, plain)
