"""``smpc schema``'s overrides: ``--scale COLUMN=VALUE`` and ``--categories COLUMN=a,b,c`` declare columns by
hand, so that a declared schema can be written with no data at all (or replace entries inferred from data)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from typing import Any

from smpc.loan.schema import DataError, Schema, Table, check_label, label_classes

#: One override as the command line gives it: ("scale" or "categories", "COLUMN=VALUE").
Override = tuple[str, str]

#: Commas separate categories, except a backslashed one (``\,``), which stands for a comma in a category.
_SEPARATOR = re.compile(r"(?<!\\),")


class TaggedAppend(argparse.Action):
    """Appends (its ``const``, the value) to ``dest``: several flags share one list in command-line order."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", [])
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), (self.const, values)])


def _split(flag: str, text: str) -> tuple[str, str]:
    column, equals, value = text.partition("=")
    if not equals or not column.strip() or not value.strip():
        raise DataError(f"--{flag} needs COLUMN=VALUE, got {text!r}")
    return column.strip(), value.strip()


def parse_scale(text: str) -> tuple[str, float]:
    """``COLUMN=VALUE`` with VALUE a power of two > 0 (a public bound on the column's |values|)."""
    column, value = _split("scale", text)
    try:
        scale = float(value)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0 and math.frexp(scale)[0] == 0.5):
        raise DataError(f"--scale {column}={value}: the scale must be a power of two greater than 0 "
                        "(e.g. 64, 1024, 0.5)")
    return column, scale


def parse_categories(text: str) -> tuple[str, tuple[str, ...]]:
    """``COLUMN=a,b,c``: the column's categories in that order (``\\,`` for a comma inside a category)."""
    column, value = _split("categories", text)
    categories = tuple(part.replace("\\,", ",").strip() for part in _SEPARATOR.split(value))
    if any(not category for category in categories) or len(set(categories)) != len(categories):
        raise DataError(f"--categories {column}=...: the categories must be distinct and non-empty")
    return column, categories


#: A declared column: ("numeric", its scale) or ("categorical", its categories).
Declared = tuple[str, float | tuple[str, ...]]


def parse_overrides(overrides: Sequence[Override], label: str,
                    columns: Sequence[str] | None = None) -> dict[str, Declared]:
    """The declared columns, in flag order; each must be a feature (not ``label``), given once, and one of
    ``columns`` (the data's) when given."""
    declared: dict[str, Declared] = {}
    for kind, text in overrides:
        column, entry = parse_scale(text) if kind == "scale" else parse_categories(text)
        _check_column(column, kind, label, set(declared), columns)
        declared[column] = ("numeric" if kind == "scale" else "categorical", entry)
    return declared


def schema_from_flags(declared: dict[str, Declared], label: str, positive: str | None) -> Schema:
    """A schema of the declared columns alone, in their order (no data: ``positive`` is needed)."""
    if positive is None:
        raise DataError("without --data, give the label's positive value: --positive VALUE")
    return _build(label, (positive, ()), list(declared), declared, None)


def schema_with_overrides(table: Table, declared: dict[str, Declared], label: str, positive: str | None) -> Schema:
    """The schema of ``table``'s columns, in its order: the declared entries as given (their values are not
    inferred, so a column mixing numbers and text can be declared categorical), the others inferred."""
    check_label(label, table.header)
    order = [name for name in table.header if name != label]
    if all(name in declared for name in order):
        return _build(label, label_classes(label, (row[label] for row in table.rows), positive), order, declared,
                      None)
    inferred = Schema.infer([name for name in table.header if name not in declared], table.rows, label, positive,
                            table.place)
    return _build(label, (inferred.positive, inferred.classes), order, declared, inferred)


def _build(label: str, target: tuple[str, tuple[str, ...]], order: Sequence[str], declared: dict[str, Declared],
           inferred: Schema | None) -> Schema:
    """The schema of ``order``'s columns; ``target`` is the label's (positive value, classes)."""
    scales = dict(inferred.numeric) if inferred is not None else {}
    categories = dict(inferred.categorical) if inferred is not None else {}
    numeric: list[tuple[str, float]] = []
    categorical: list[tuple[str, tuple[str, ...]]] = []
    for name in order:
        kind, entry = declared.get(name) or (("numeric", scales[name]) if name in scales
                                            else ("categorical", categories[name]))
        if kind == "numeric" and isinstance(entry, float):
            numeric.append((name, entry))
        elif isinstance(entry, tuple):
            categorical.append((name, entry))
    return Schema.build(label, target[0], numeric, categorical, target[1])


def _check_column(column: str, kind: str, label: str, seen: set[str], columns: Sequence[str] | None) -> None:
    if column == label:
        raise DataError(f"--{kind} {column}=...: {column!r} is the label column, not a feature")
    if column in seen:
        raise DataError(f"column {column!r} is given twice (--scale and --categories declare one column each)")
    if columns is not None and column not in columns:
        raise DataError(f"--{kind} {column}=...: no column {column!r} in the data; columns are: {', '.join(columns)}")
