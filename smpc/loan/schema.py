"""The public schema of a loan data set and the CSV reader: column types, categories, public scales, the label.

The schema is public metadata every bank agrees on (column names, which are numeric with a public power-of-two
scale bounding their magnitude, the categories of each categorical column, the label and its positive value);
each bank encodes only its own rows with it.  Nothing here is secret and nothing here touches the network.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
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


@dataclass(frozen=True)
class Table:
    """The rows of one CSV file, each with the line the file counts it at (the header is line 1)."""

    source: str  # the file's path as the user gave it
    header: list[str]
    rows: list[dict[str, str]]
    lines: list[int]

    def take(self, indices: Iterable[int]) -> Table:
        """The rows at ``indices`` (in that order), still named by their file's lines."""
        chosen = [int(index) for index in indices]
        return Table(self.source, self.header, [self.rows[i] for i in chosen], [self.lines[i] for i in chosen])

    def head(self, count: int | None) -> Table:
        """The first ``count`` rows (all of them for None or 0)."""
        return self.take(range(min(count, len(self.rows)) if count else len(self.rows)))

    def place(self, index: int) -> str:
        """Where row ``index`` is, as error messages say it: ``FILE, line N``."""
        return f"{self.source}, line {self.lines[index]}"


def load_table(path: str | Path) -> Table:
    """The rows of a CSV file; refuses empty files, ragged rows and missing values, naming the cell."""
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
        rows, lines = [], []
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
            lines.append(line_number)
    if not rows:
        raise DataError(f"{path}: no data rows")
    return Table(str(path), header, rows, lines)


def load_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a CSV file (``load_table`` without the line numbers)."""
    table = load_table(path)
    return table.header, table.rows


def row_place(index: int) -> str:
    """Where row ``index`` is when no file names it: ``row N`` (from 1)."""
    return f"row {index + 1}"


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a finite number."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def column_kind(name: str, values: Sequence[str], place: Callable[[int], str] = row_place) -> str:
    """"numeric" when every value parses as a finite number, "categorical" when none does; a mix is refused
    (DataError naming the first value of the minority kind, where it is; a tie counts the text as the odd one)."""
    numbers = [is_number(value) for value in values]
    count = sum(numbers)
    if count == len(values):
        return "numeric"
    if count == 0:
        return "categorical"
    odd_is_text = count * 2 >= len(values)
    index = numbers.index(not odd_is_text)
    if odd_is_text:
        raise DataError(f"{place(index)}: {values[index]!r} in column {name!r} is not a number (the column's "
                        "other values are numbers)")
    raise DataError(f"{place(index)}: {values[index]!r} in column {name!r} is a number but the column's other "
                    "values are not; fix the value, or declare the column categorical in a schema "
                    "(smpc schema --categories)")


def magnitude_exponent(values: Iterable[str]) -> int | None:
    """ceil(log2(max |value|)) of numeric values, exactly (frexp, no rounding of a logarithm); None when every
    value is 0 (such a column gets the scale 1)."""
    largest = max(abs(float(value)) for value in values)
    if largest == 0:
        return None
    mantissa, exponent = math.frexp(largest)  # largest = mantissa * 2^exponent, 0.5 <= mantissa < 1
    return exponent - 1 if mantissa == 0.5 else exponent


def scale_of(exponent: int | None) -> float:
    """The public scale of a numeric column whose largest |value| has ``magnitude_exponent`` ``exponent``."""
    return 1.0 if exponent is None else math.ldexp(1.0, exponent)


def positive_label(label: str, values: Iterable[str], positive: str | None) -> str:
    """The label's positive value: ``positive`` if it occurs among ``values``, else the larger of exactly two."""
    labels = sorted(set(values))
    if positive is None:
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        if len(labels) < 2:
            raise DataError(f"label column {label!r} has only one value ({shown}); training needs two or more")
        if len(labels) != 2:
            raise DataError(f"label column {label!r} has {len(labels)} values ({shown}); the job needs a "
                            "binary label: pass --positive VALUE")
        return labels[1]
    if positive not in labels:
        raise DataError(f"positive value {positive!r} does not occur in column {label!r} "
                        f"(values: {', '.join(labels[:10])})")
    return positive


def label_classes(label: str, values: Iterable[str], positive: str | None) -> tuple[str, tuple[str, ...]]:
    """(positive value, classes) of the label: a binary job (``positive_label``, no classes) unless the label
    has more than two values and no ``positive`` is given: then a multi-class job, its classes the sorted
    values (the one-hot order) and no positive value ("")."""
    labels = sorted(set(values))
    if positive is None and len(labels) > 2:
        return "", tuple(labels)
    return positive_label(label, labels, positive), ()


def check_label(label: str, header: Sequence[str]) -> None:
    if label not in header:
        raise DataError(f"label column {label!r} not found; columns are: {', '.join(header)}")


@dataclass(frozen=True)
class Schema:
    """Public description of a data set: how each bank turns its rows into features and labels."""

    label: str
    positive: str
    numeric: tuple[tuple[str, float], ...]  # (column, public scale: a power of two >= its largest |value|)
    categorical: tuple[tuple[str, tuple[str, ...]], ...]  # (column, categories in order)
    classes: tuple[str, ...] = ()  # a multi-class label's values, in one-hot order; () for a binary label

    @property
    def n_outputs(self) -> int:
        """The model's outputs: 1 (the positive label's probability) or one logit per class."""
        return len(self.classes) if self.classes else 1

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(categories) for _, categories in self.categorical)

    @property
    def feature_names(self) -> list[str]:
        names = [name for name, _ in self.numeric]
        names += [f"{name}={category}" for name, categories in self.categorical for category in categories]
        return names

    @staticmethod
    def infer(header: Sequence[str], rows: Sequence[dict[str, str]], label: str, positive: str | None,
              place: Callable[[int], str] = row_place) -> Schema:
        """Numeric columns are those whose every value parses as a finite number, categorical those where none
        does (a mix is refused, naming the odd value at ``place(row index)``); scales are the power-of-two
        ceilings of each numeric column's largest |value|, categories sorted."""
        check_label(label, header)
        positive, classes = label_classes(label, (row[label] for row in rows), positive)
        numeric, categorical = [], []
        for name in header:
            if name == label:
                continue
            values = [row[name] for row in rows]
            if column_kind(name, values, place) == "numeric":
                numeric.append((name, scale_of(magnitude_exponent(values))))
            else:
                categorical.append((name, tuple(sorted(set(values)))))
        return Schema.build(label, positive, numeric, categorical, classes)

    @staticmethod
    def build(label: str, positive: str, numeric: Sequence[tuple[str, float]],
              categorical: Sequence[tuple[str, Sequence[str]]], classes: Sequence[str] = ()) -> Schema:
        """A schema from its parts; refuses one with no feature column."""
        if not numeric and not categorical:
            raise DataError("no feature columns besides the label")
        return Schema(label, positive, tuple((name, float(scale)) for name, scale in numeric),
                      tuple((name, tuple(categories)) for name, categories in categorical), tuple(classes))

    @property
    def max_square_norm(self) -> float:
        """A bound on the squared L2 norm of any encoded row: each numeric feature lies in [-1, 1] (clipped to
        its scale) and each categorical column sets at most one 1."""
        return float(len(self.numeric) + len(self.categorical))

    def encode(self, rows: Sequence[dict[str, str]], *, clip: bool = False,
               place: Callable[[int], str] = row_place) -> tuple[np.ndarray, np.ndarray]:
        """(features N x D float64, labels N float64); numeric columns divided by their public scale.  Labels
        are 1.0 for the positive value and 0.0 otherwise, or with ``classes`` each row's class index (a label
        outside the classes is refused).

        A value that is not a number in a numeric column is refused (DataError naming ``place(row index)``: the
        file and line where the caller knows them).  A numeric value beyond its scale, or a category the schema
        lacks, is refused too, or with ``clip`` clipped to [-scale, scale] (resp. encoded as no category), so
        that no error depends on the data (differential privacy needs that: an abort would tell every bank
        something about the rows).
        """
        features, labels, _ = self._encode(rows, clip, place)
        return features, labels

    def count_clipped(self, rows: Sequence[dict[str, str]]) -> int:
        """How many values ``encode(rows, clip=True)`` clips (numeric beyond the scale, unknown categories)."""
        return self._encode(rows, True, row_place)[2]

    def _encode(self, rows: Sequence[dict[str, str]], clip: bool, place: Callable[[int], str]
                ) -> tuple[np.ndarray, np.ndarray, int]:
        features = np.zeros((len(rows), self.n_features), dtype=np.float64)
        labels = np.zeros(len(rows), dtype=np.float64)
        clipped = 0
        for index, row in enumerate(rows):
            try:
                clipped += self._encode_row(row, features[index], clip, functools.partial(place, index))
                labels[index] = self._label_value(row[self.label], functools.partial(place, index))
            except KeyError as error:
                raise DataError(f"column {error.args[0]!r} of the schema is missing from the data") from None
        return features, labels, clipped

    def _label_value(self, value: str, where: Callable[[], str]) -> float:
        if not self.classes:
            return 1.0 if value == self.positive else 0.0
        if value not in self.classes:
            raise DataError(f"{where()}: {self.label}={value!r} is not a class of the schema "
                            f"({', '.join(self.classes[:10])})")
        return float(self.classes.index(value))

    def _encode_row(self, row: dict[str, str], out: np.ndarray, clip: bool, where: Callable[[], str]) -> int:
        """Write one row's features into ``out``; returns how many of its values were clipped."""
        column, clipped = 0, 0
        for name, scale in self.numeric:
            if not is_number(row[name]):
                raise DataError(f"{where()}: {row[name]!r} in column {name!r} is not a number (the schema "
                                "declares the column numeric)")
            value = float(row[name])
            if abs(value) > scale:
                if not clip:
                    raise DataError(f"{where()}: {name}={value} exceeds the schema's scale {scale}")
                value, clipped = math.copysign(scale, value), clipped + 1
            out[column] = value / scale
            column += 1
        for name, categories in self.categorical:
            category = row[name]
            if category in categories:
                out[column + categories.index(category)] = 1.0
            elif clip:
                clipped += 1
            else:
                raise DataError(f"{where()}: {name}={category!r} is not a category of the schema")
            column += len(categories)
        return clipped

    def to_dict(self) -> dict[str, Any]:
        """The schema as JSON: ``label``, then ``positive`` (binary) or ``classes`` (multi-class), ``numeric``,
        ``categorical``."""
        target: dict[str, Any] = {"classes": list(self.classes)} if self.classes else {"positive": self.positive}
        return {
            "label": self.label,
            **target,
            "numeric": [{"column": name, "scale": scale} for name, scale in self.numeric],
            "categorical": [{"column": name, "categories": list(categories)} for name, categories in self.categorical],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Schema:
        try:
            classes = tuple(str(value) for value in data.get("classes", ()))
            if len(set(classes)) != len(classes) or len(classes) in (1, 2):
                raise ValueError("'classes' needs three or more distinct values (a binary label has 'positive')")
            return Schema(
                label=str(data["label"]),
                positive="" if classes else str(data["positive"]),
                numeric=tuple((str(item["column"]), float(item["scale"])) for item in data["numeric"]),
                categorical=tuple((str(item["column"]), tuple(str(c) for c in item["categories"]))
                                  for item in data["categorical"]),
                classes=classes,
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
