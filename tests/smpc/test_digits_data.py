"""The embedded digits and the experiment's splits: 1,797 images of 8x8 pixels in [0, 1] with labels 0-9; a
seeded stratified split that keeps class proportions; owners by digit as the article splits MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smpc.digits import DIGIT_OWNERS, embedded_digits, load_digits, split_by_digit, split_evenly, stratified_split
from smpc.loan.schema import DataError


def test_embedded_digits_load() -> None:
    data = load_digits()
    assert embedded_digits().name == "digits.csv"
    assert data.images.shape == (1797, 1, 8, 8) and data.images.dtype == np.float32
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert sorted(np.unique(data.labels).tolist()) == list(range(10))
    assert np.bincount(data.labels).min() >= 170


def test_stratified_split_is_seeded_disjoint_and_keeps_proportions() -> None:
    labels = load_digits().labels
    train, test = stratified_split(labels, 0.3, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    expected = np.round(0.3 * np.bincount(labels))
    assert np.array_equal(np.bincount(labels[test]), expected)
    assert np.array_equal(stratified_split(labels, 0.3, seed=0)[1], test)
    assert not np.array_equal(stratified_split(labels, 0.3, seed=1)[1], test)
    with pytest.raises(ValueError, match="strictly between"):
        stratified_split(labels, 1.0)


def test_split_by_digit_gives_each_owner_its_digits_only() -> None:
    labels = load_digits().labels
    owners = split_by_digit(labels)
    for rows, digits in zip(owners, DIGIT_OWNERS):
        assert set(labels[rows].tolist()) == set(digits)
    assert sorted(np.concatenate(owners).tolist()) == list(range(len(labels)))
    even = split_evenly(labels, 3, seed=0)
    assert sorted(np.concatenate(even).tolist()) == list(range(len(labels)))
    assert max(len(rows) for rows in even) - min(len(rows) for rows in even) <= 1
    with pytest.raises(ValueError, match="two owners"):
        split_by_digit(labels, [(0, 1), (1, 2)])


def test_a_bad_digits_file_is_one_clear_data_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    missing.write_text("p0,digit\n1,2\n")
    with pytest.raises(DataError, match="missing column p1"):
        load_digits(missing)
    header = ",".join([f"p{i}" for i in range(64)] + ["digit"])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(header + "\n" + ",".join(["17"] * 64 + ["3"]) + "\n")
    with pytest.raises(DataError, match="0..16"):
        load_digits(wrong)
