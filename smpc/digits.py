"""The embedded digit images (UCI optical digits, CC BY 4.0; see smpc/data/README.md) and the splits the digit
experiment uses: a seeded stratified train/test split and the rows of each data owner when split by digit.

Plain data handling only (no secrets, no I/O beyond reading the CSV); the secure training reads the same arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from smpc.loan.schema import DataError, load_csv

#: Image side (pixels) and the largest pixel value of the embedded digits.
SIDE = 8
MAX_PIXEL = 16
LABEL = "digit"
#: The article's split by digit among three data owners: owner 0 has 0-3, owner 1 has 4-6, owner 2 has 7-9.
DIGIT_OWNERS: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))


def embedded_digits() -> Path:
    """Path of the embedded digits CSV (UCI optical digits, CC BY 4.0; see smpc/data/README.md)."""
    return Path(str(resources.files("smpc") / "data" / "digits.csv"))


@dataclass(frozen=True)
class Digits:
    """Images scaled to [0, 1] as float32 (n, 1, 8, 8) and labels as int64 (n,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> Digits:
        return Digits(self.images[rows], self.labels[rows])


def load_digits(path: str | Path | None = None) -> Digits:
    """The digits of ``path`` (default: the embedded file): columns p0..p63 and ``digit``; pixels divided by
    16 so they lie in [0, 1].  Raises DataError naming a missing column or a value out of range."""
    path = Path(path) if path is not None else embedded_digits()
    header, rows = load_csv(path)
    pixels = [f"p{i}" for i in range(SIDE * SIDE)]
    missing = [name for name in [*pixels, LABEL] if name not in header]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]}")
    try:
        values = np.array([[float(row[name]) for name in pixels] for row in rows], dtype=np.float32)
        labels = np.array([int(row[LABEL]) for row in rows], dtype=np.int64)
    except ValueError as error:
        raise DataError(f"{path}: a pixel or digit is not a number ({error})") from None
    if values.min() < 0 or values.max() > MAX_PIXEL or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: pixels must lie in 0..{MAX_PIXEL} and digits in 0..9")
    return Digits((values / MAX_PIXEL).reshape(-1, 1, SIDE, SIDE), labels)


def stratified_split(labels: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test), each sorted: per class, a seeded permutation puts round(fraction * count)
    rows in the test set, so both sets keep the class proportions."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must lie strictly between 0 and 1, not {test_fraction}")
    generator = np.random.default_rng(seed)  # a public split of public-schema data, not share randomness
    train, test = [], []
    for label in np.unique(labels):
        rows = generator.permutation(np.flatnonzero(labels == label))
        cut = int(round(test_fraction * len(rows)))
        test.append(rows[:cut])
        train.append(rows[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def split_by_digit(labels: np.ndarray, owners: Sequence[Sequence[int]] = DIGIT_OWNERS) -> list[np.ndarray]:
    """Row indices of each data owner: owner i holds the rows whose digit is in ``owners[i]``."""
    covered = sorted(digit for group in owners for digit in group)
    if covered != sorted(set(covered)):
        raise ValueError("a digit belongs to two owners")
    return [np.flatnonzero(np.isin(labels, list(group))) for group in owners]


def split_evenly(labels: np.ndarray, parts: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of ``parts`` owners holding a seeded random, near-equal share of the rows (the IID
    reference for the split by digit)."""
    rows = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(chunk) for chunk in np.array_split(rows, parts)]
