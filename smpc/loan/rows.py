"""Rows to score: a CSV's raw rows turned into the features a trained model takes, and its predictions written
back.  Used by ``smpc predict`` (plain torch, on the model owner's side) and by ``smpc party --predict`` (the
row owner's input to private inference), so that both encode a row exactly as training did.

A row's features are ``Schema.encode``'s, without the label: each numeric column divided by its public scale,
each categorical column one-hot in the schema's category order.  Values beyond a numeric column's scale and
categories the schema lacks are refused, naming the file, the line (as the file counts lines) and the column,
unless the model was trained on clipped rows (a differentially private run, whose schema is declared and
whose rows were clipped to it): its rows are clipped the same way.  Nothing here touches the network.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from smpc.files import open_private
from smpc.loan.schema import DataError, Schema, load_csv


def schema_columns(schema: Schema) -> list[str]:
    """The feature columns a model takes, in its input order: the numeric columns, then the categorical ones."""
    return [name for name, _ in schema.numeric] + [name for name, _ in schema.categorical]


def read_rows(path: str | Path, schema: Schema) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of ``path`` (``load_csv``: missing values refused) and the file line of each, after checking
    that every feature column of ``schema`` is there (the label column may be there too, or not)."""
    header, rows = load_csv(path)
    missing = [name for name in schema_columns(schema) if name not in header]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{path}: column {missing[0]!r} of the model's schema is missing{more}; the model takes "
                        f"the columns {', '.join(schema_columns(schema))}")
    return rows, data_lines(path)


def data_lines(path: str | Path) -> list[int]:
    """The file line on which each data row of ``path`` ends (blank lines skipped, as ``load_csv`` skips them)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        return [reader.line_num for values in reader if values]


def feature_matrix(schema: Schema, rows: Sequence[dict[str, str]], lines: Sequence[int], source: str | Path, *,
                   clip: bool) -> np.ndarray:
    """Features (N x D float64, ``schema.feature_names`` order) of raw ``rows``; ``lines[i]`` is row i's line in
    ``source``, for the errors.  With ``clip``, values beyond a scale are clipped to it and unknown categories
    encode as no category (``Schema.encode(clip=True)``); without, both are refused."""
    features = np.zeros((len(rows), schema.n_features), dtype=np.float64)
    for index, row in enumerate(rows):
        where = f"{source}, line {lines[index]}"
        for column, (name, scale) in enumerate(schema.numeric):
            features[index, column] = _numeric(row[name], scale, clip, f"{where}, column {name!r}") / scale
        column = len(schema.numeric)
        for name, categories in schema.categorical:
            value = row[name]
            if value in categories:
                features[index, column + categories.index(value)] = 1.0
            elif not clip:
                raise DataError(f"{where}, column {name!r}: {value!r} is not a category of the model's schema "
                                f"({', '.join(categories)})")
            column += len(categories)
    return features


def _numeric(text: str, scale: float, clip: bool, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number (the column is numeric in the model's schema)") from None
    if math.isnan(value):
        raise DataError(f"{where}: {text!r} is not a number (the column is numeric in the model's schema)")
    if abs(value) <= scale:
        return value
    if clip:
        return math.copysign(scale, value)
    raise DataError(f"{where}: {text} exceeds the schema's scale {scale:g}, beyond what the model was trained on")


def positive_labels(schema: Schema, rows: Sequence[dict[str, str]]) -> np.ndarray | None:
    """1.0 where a row's label is the schema's positive value, else 0.0; None when the rows have no label."""
    if not rows or schema.label not in rows[0]:
        return None
    return np.array([1.0 if row[schema.label] == schema.positive else 0.0 for row in rows])


def class_labels(schema: Schema, rows: Sequence[dict[str, str]], lines: Sequence[int], source: str | Path
                 ) -> np.ndarray | None:
    """Each row's class index (a multi-class schema); None when the rows have no label column.  A label outside
    the schema's classes is refused, naming the file and line."""
    if not rows or schema.label not in rows[0]:
        return None
    for index, row in enumerate(rows):
        if row[schema.label] not in schema.classes:
            raise DataError(f"{source}, line {lines[index]}: {schema.label}={row[schema.label]!r} is not a class of "
                            f"the model ({', '.join(schema.classes[:10])})")
    return np.array([float(schema.classes.index(row[schema.label])) for row in rows])


def write_class_predictions(path: str | Path, probabilities: np.ndarray, lines: Sequence[int],
                            classes: Sequence[str]) -> Path:
    """A multi-class model's ``write_predictions``: ``row,line,class`` (the most probable class) and one
    ``probability_<class>`` column per class (the schema's order), 17 significant digits; mode 0600."""
    with open_private(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["row", "line", "class", *(f"probability_{name}" for name in classes)])
        for index, (line, values) in enumerate(zip(lines, probabilities.tolist())):
            best = classes[int(np.argmax(values))]
            writer.writerow([index + 1, line, best, *(f"{value:.17g}" for value in values)])
    return Path(path)


def class_summary(probabilities: np.ndarray, lines: Sequence[int], classes: Sequence[str], shown: int = 5
                  ) -> list[str]:
    """A few lines about a multi-class model's ``probabilities`` (N x K): how many rows of each predicted
    class, then the first ``shown`` rows' class and per-class probabilities."""
    predicted = np.argmax(probabilities, axis=1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    counts = ", ".join(f"{name}: {int((predicted == k).sum())}" for k, name in enumerate(classes))
    text = [f"{len(probabilities)} rows; predicted classes {counts}"]
    for index in range(min(shown, len(probabilities))):
        values = " ".join(f"{name}={value:.4f}" for name, value in zip(classes, probabilities[index].tolist()))
        text.append(f"  row {index + 1} (line {lines[index]}): class {classes[int(predicted[index])]}  ({values})")
    return text


def write_predictions(path: str | Path, probabilities: np.ndarray, lines: Sequence[int]) -> Path:
    """``path`` as CSV: a header ``row,line,probability``, then per data row its number (1 = the first row
    after the header), the line it came from, and the probability of the positive label (17 significant
    digits: a float64 read back exactly).  Written mode 0600: predictions are as private as the rows."""
    with open_private(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["row", "line", "probability"])
        for index, (line, probability) in enumerate(zip(lines, probabilities.reshape(-1).tolist())):
            writer.writerow([index + 1, line, f"{probability:.17g}"])
    return Path(path)


def summary(probabilities: np.ndarray, lines: Sequence[int], shown: int = 5) -> list[str]:
    """A few lines about ``probabilities``: how many, their mean and range, and the first ``shown`` rows."""
    values = probabilities.reshape(-1)
    text = [f"{len(values)} rows: mean probability {values.mean():.4f}, min {values.min():.4f}, "
            f"max {values.max():.4f}" if len(values) else "0 rows"]
    text += [f"  row {index + 1} (line {lines[index]}): {values[index]:.6f}"
             for index in range(min(shown, len(values)))]
    return text
