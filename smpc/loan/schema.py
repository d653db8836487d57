"""The public schema of a loan data set and the CSV reader: column types, categories, public scales, the label.

The schema is public metadata every bank agrees on (column names, which are numeric with a public power-of-two
scale bounding their magnitude, the categories of each categorical column, the label and its positive value);
each bank encodes only its own rows with it.  Nothing here is secret and nothing here touches the network.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_LABEL = "creditability"
DEFAULT_POSITIVE = "bad"


def embedded_dataset() -> Path:
    """Path of the embedded German Credit CSV (UCI Statlog, CC BY 4.0; see smpc/data/README.md)."""
    return Path(str(resources.files("smpc") / "data" / "german_credit.csv"))


def embedded_schema() -> Path:
    """Path of the embedded data's declared public schema: the categories its documentation lists and public
    power-of-two scales, written down once, never computed from the rows (what differential privacy needs)."""
    return Path(str(resources.files("smpc") / "data" / "german_credit.schema.json"))


class DataError(ValueError):
    """A data file or schema a user must fix; the message says what and where."""


def load_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a CSV file; refuses empty files, ragged rows and missing values, naming the cell."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty") from None
        header = [name.strip() for name in header]
        if len(set(header)) != len(header) or any(not name for name in header):
            raise DataError(f"{path}: column names must be unique and non-empty")
        rows = []
        for line_number, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"{path}, line {line_number}: {len(values)} values for {len(header)} columns")
            row = {name: value.strip() for name, value in zip(header, values)}
            missing = [name for name, value in row.items() if value in ("", "NA", "NaN", "nan", "?")]
            if missing:
                raise DataError(f"{path}, line {line_number}: missing value in column {missing[0]!r}; "
                                "fill or drop such rows first")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no data rows")
    return header, rows


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


@dataclass(frozen=True)
class Schema:
    """Public description of a data set: how each bank turns its rows into features and labels."""

    label: str
    positive: str
    numeric: tuple[tuple[str, float], ...]  # (column, public scale: a power of two >= its largest |value|)
    categorical: tuple[tuple[str, tuple[str, ...]], ...]  # (column, categories in order)

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(categories) for _, categories in self.categorical)

    @property
    def feature_names(self) -> list[str]:
        names = [name for name, _ in self.numeric]
        names += [f"{name}={category}" for name, categories in self.categorical for category in categories]
        return names

    @staticmethod
    def infer(header: Sequence[str], rows: Sequence[dict[str, str]], label: str, positive: str | None) -> Schema:
        """Numeric columns are those whose every value parses as a finite number; the rest are categorical."""
        if label not in header:
            raise DataError(f"label column {label!r} not found; columns are: {', '.join(header)}")
        labels = sorted({row[label] for row in rows})
        if positive is None:
            if len(labels) != 2:
                shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
                raise DataError(f"label column {label!r} has {len(labels)} values ({shown}); the job needs a "
                                "binary label: pass --positive VALUE")
            positive = labels[1]
        elif positive not in labels:
            raise DataError(f"positive value {positive!r} does not occur in column {label!r} "
                            f"(values: {', '.join(labels[:10])})")
        numeric, categorical = [], []
        for name in header:
            if name == label:
                continue
            values = [row[name] for row in rows]
            if all(_is_number(value) for value in values):
                largest = max(abs(float(value)) for value in values)
                numeric.append((name, float(2.0 ** math.ceil(math.log2(largest))) if largest > 0 else 1.0))
            else:
                categorical.append((name, tuple(sorted(set(values)))))
        if not numeric and not categorical:
            raise DataError("no feature columns besides the label")
        return Schema(label, positive, tuple(numeric), tuple(categorical))

    @property
    def max_square_norm(self) -> float:
        """A bound on the squared L2 norm of any encoded row: each numeric feature lies in [-1, 1] (clipped to
        its scale) and each categorical column sets at most one 1."""
        return float(len(self.numeric) + len(self.categorical))

    def encode(self, rows: Sequence[dict[str, str]], *, clip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(features N x D float64, labels N float64 in {0, 1}); numeric columns divided by their public scale.

        A numeric value beyond its scale, or a category the schema lacks, is refused (DataError naming the row),
        or with ``clip`` clipped to [-scale, scale] (resp. encoded as no category), so that no error depends on
        the data (differential privacy needs that: an abort would tell every bank something about the rows).
        """
        features, labels, _ = self._encode(rows, clip)
        return features, labels

    def count_clipped(self, rows: Sequence[dict[str, str]]) -> int:
        """How many values ``encode(rows, clip=True)`` clips (numeric beyond the scale, unknown categories)."""
        return self._encode(rows, True)[2]

    def _encode(self, rows: Sequence[dict[str, str]], clip: bool) -> tuple[np.ndarray, np.ndarray, int]:
        features = np.zeros((len(rows), self.n_features), dtype=np.float64)
        labels = np.zeros(len(rows), dtype=np.float64)
        clipped = 0
        for index, row in enumerate(rows):
            try:
                column = 0
                for name, scale in self.numeric:
                    value = float(row[name])
                    if abs(value) > scale:
                        if not clip:
                            raise DataError(f"row {index + 1}: {name}={value} exceeds the schema's scale {scale}")
                        value, clipped = math.copysign(scale, value), clipped + 1
                    features[index, column] = value / scale
                    column += 1
                for name, categories in self.categorical:
                    category = row[name]
                    if category in categories:
                        features[index, column + categories.index(category)] = 1.0
                    elif clip:
                        clipped += 1
                    else:
                        raise DataError(f"row {index + 1}: {name}={category!r} is not a category of the schema")
                    column += len(categories)
                labels[index] = 1.0 if row[self.label] == self.positive else 0.0
            except KeyError as error:
                raise DataError(f"column {error.args[0]!r} of the schema is missing from the data") from None
            except ValueError as error:
                if isinstance(error, DataError):
                    raise
                raise DataError(f"row {index + 1}: {error}") from None
        return features, labels, clipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "positive": self.positive,
            "numeric": [{"column": name, "scale": scale} for name, scale in self.numeric],
            "categorical": [{"column": name, "categories": list(categories)} for name, categories in self.categorical],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Schema:
        try:
            return Schema(
                label=str(data["label"]),
                positive=str(data["positive"]),
                numeric=tuple((str(item["column"]), float(item["scale"])) for item in data["numeric"]),
                categorical=tuple((str(item["column"]), tuple(str(c) for c in item["categories"]))
                                  for item in data["categorical"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"malformed schema: {error}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> Schema:
        try:
            return Schema.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not a JSON schema ({error})") from None
        except OSError as error:
            raise DataError(f"{path}: {error.strerror}") from None

    def fingerprint(self) -> bytes:
        """16 bytes every bank compares before training: equal schemas, equal fingerprints."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")).digest()[:16]
