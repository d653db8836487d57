"""``smpc schema``'s overrides: ``--scale COLUMN=VALUE`` and ``--categories COLUMN=a,b,c`` declare columns by
hand, so that a declared schema can be written with no data at all (or replace entries inferred from data)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from typing import Any

from smpc.loan.schema import DataError, Schema

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


def apply_overrides(base: Schema | None, overrides: Sequence[Override], label: str,
                    positive: str | None, columns: Sequence[str] | None = None) -> Schema:
    """``base`` (inferred from data; None for none) with each override replacing or adding its column.

    Without ``base`` the schema is the overrides alone, in their order, and needs ``positive``.  With it, an
    override keeps the column's place when the kind is unchanged and moves it to the end of its new kind
    otherwise; ``columns`` (the data's) must hold every overridden column.
    """
    numeric = dict(base.numeric) if base is not None else {}
    categorical = dict(base.categorical) if base is not None else {}
    seen: set[str] = set()
    for kind, text in overrides:
        if kind == "scale":
            column, scale = parse_scale(text)
            _check_column(column, kind, label, seen, columns)
            categorical.pop(column, None)
            numeric[column] = scale
        else:
            column, categories = parse_categories(text)
            _check_column(column, kind, label, seen, columns)
            numeric.pop(column, None)
            categorical[column] = categories
        seen.add(column)
    if base is not None:
        return Schema.build(base.label, base.positive, list(numeric.items()), list(categorical.items()))
    if positive is None:
        raise DataError("without --data, give the label's positive value: --positive VALUE")
    return Schema.build(label, positive, list(numeric.items()), list(categorical.items()))


def _check_column(column: str, kind: str, label: str, seen: set[str], columns: Sequence[str] | None) -> None:
    if column == label:
        raise DataError(f"--{kind} {column}=...: {column!r} is the label column, not a feature")
    if column in seen:
        raise DataError(f"column {column!r} is given twice (--scale and --categories declare one column each)")
    if columns is not None and column not in columns:
        raise DataError(f"--{kind} {column}=...: no column {column!r} in the data; columns are: {', '.join(columns)}")
