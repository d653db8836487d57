"""The joint schema: every bank agrees the public schema from its own rows at start-up, with no schema file.

Each party summarises its rows (``summarise``): the column names, each column's type, the label column, each
categorical column's categories, the label's values, and each numeric column's magnitude exponent
e = ceil(log2 max|value|).  The names, types and the label column are exchanged in the clear
(``exchange_public``).  The categories and label values go into ``secret_union``, which opens their union and
not who holds what.  The exponents are shared, their elementwise maximum over the parties is taken under MPC
and only that maximum is opened (``joint_exponents``).  The maximum over the banks of ceil(log2 max_b) is
ceil(log2) of the joint maximum, so the result equals ``Schema.infer`` on all banks' rows put together.

What every party learns: every other party's column names (and their order in its file), column types and
label column; the union of each categorical column's categories and of the label values, and the longest
category's length in bytes; each numeric column's joint power-of-two scale (or that all its values are 0).
Nothing of which bank holds which category, nor of any bank's own magnitudes: every other opening is masked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smpc.loan.schema import (
    DataError,
    Schema,
    Table,
    check_label,
    column_kind,
    label_classes,
    magnitude_exponent,
    scale_of,
)
from smpc.loan.secret_union import joint_maximum, secret_union
from smpc.session import Session

#: Stands for "every value is 0" among the exponents: below ceil(log2 x) of any positive double (>= -1074).
NO_MAGNITUDE = -1075


@dataclass(frozen=True)
class Summary:
    """One party's summary of its rows: ``public`` is sent to the other parties, the rest never is."""

    public: dict[str, Any]  # {"columns": [...], "kinds": {column: kind}, "label": column}; kinds "numeric" or
    #                          "categorical", the label column left out
    exponents: dict[str, int | None]  # numeric column -> magnitude_exponent of this party's values
    categories: dict[str, list[str]]  # categorical column -> this party's categories, sorted
    labels: list[str]  # this party's label values, sorted


def summarise(table: Table, label: str) -> Summary:
    """This party's summary of ``table``; a column mixing numbers and text is refused, naming file and line."""
    check_label(label, table.header)
    kinds: dict[str, str] = {}
    categories: dict[str, list[str]] = {}
    exponents: dict[str, int | None] = {}
    for name in table.header:
        if name == label:
            continue
        values = [row[name] for row in table.rows]
        kinds[name] = column_kind(name, values, table.place)
        if kinds[name] == "numeric":
            exponents[name] = magnitude_exponent(values)
        else:
            categories[name] = sorted(set(values))
    public = {"columns": list(table.header), "kinds": kinds, "label": label}
    return Summary(public, exponents, categories, sorted({row[label] for row in table.rows}))


def agree_joint_schema(session: Session, table: Table, label: str, positive: str | None) -> Schema:
    """The public schema of all parties' rows together, agreed by every party from its own ``table``.

    Steps: 1. summarise this party's rows (``summarise``); 2. send the public summary (column names, types,
    label column) to every other party and receive theirs (``exchange_public``); 3. refuse unless all parties
    have the same label and the same columns of the same types (DataError naming the column and the parties);
    4. the union of each categorical column's categories and of the label values (``secret_union``: opens the
    union, not who holds what), sorted; 5. the label's positive value from that union (``--positive``, else the
    larger of exactly two), or with more than two values and no ``--positive`` its classes (multi-class);
    6. the numeric scales: 2 to the power of the maximum exponent over the parties, under MPC
    (``joint_exponents``).  Columns follow party 0's file order.
    Rounds: 1 (step 2) + those of ``secret_union`` and ``joint_exponents``.  Bytes: each party sends its JSON
    summary (its column names) to each other party, plus those of the two MPC steps.  Error: none (the result
    equals ``Schema.infer`` on all rows).
    """
    summary = summarise(table, label)
    columns = agreed_columns(exchange_public(session, summary.public, "schema summary"))
    categorical = [name for name, kind in columns if kind == "categorical"]
    union = secret_union(session, [summary.categories[name] for name in categorical] + [summary.labels],
                         [*categorical, label])
    positive, classes = label_classes(label, union[-1], positive)
    numeric = [name for name, kind in columns if kind == "numeric"]
    exponents = joint_exponents(session, [summary.exponents[name] for name in numeric])
    return Schema.build(label, positive, [(name, scale_of(e)) for name, e in zip(numeric, exponents)],
                        list(zip(categorical, union[:-1])), classes)


def agreed_columns(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(column, kind) in party 0's order, once every party has the same label and the same columns (in any
    order) of the same kinds; otherwise DataError naming the first column that differs and which parties have
    what."""
    everyone = range(len(summaries))
    labels = [theirs["label"] for theirs in summaries]
    if len(set(labels)) > 1:
        shown = " but ".join(f"{label!r} at {_parties([r for r in everyone if labels[r] == label])}"
                             for label in dict.fromkeys(labels))
        raise DataError(f"the label column is {shown}; give every party the same --label")
    seen = list(dict.fromkeys(name for theirs in summaries for name in theirs["columns"]))
    for name in seen:
        holders = [rank for rank in everyone if name in summaries[rank]["columns"]]
        if len(holders) != len(summaries):
            lacking = [rank for rank in everyone if rank not in holders]
            raise DataError(f"column {name!r} is in the data of {_parties(holders)} but not of {_parties(lacking)}; "
                            "every bank's file needs the same columns")
    order = [name for name in summaries[0]["columns"] if name in summaries[0]["kinds"]]  # JSON sorts the dicts
    for name in order:
        kinds = [theirs["kinds"][name] for theirs in summaries]
        if len(set(kinds)) > 1:
            shown = " but ".join(f"{kind} at {_parties([r for r in everyone if kinds[r] == kind])}"
                                 for kind in dict.fromkeys(kinds))
            raise DataError(f"column {name!r} is {shown}; every bank's values of a column must all be numbers "
                            "or all be text")
    return [(name, summaries[0]["kinds"][name]) for name in order]


def _parties(ranks: Sequence[int]) -> str:
    if len(ranks) == 1:
        return f"party {ranks[0]}"
    return "parties " + ", ".join(str(rank) for rank in ranks[:-1]) + f" and {ranks[-1]}"


def joint_exponents(session: Session, exponents: Sequence[int | None]) -> list[int | None]:
    """The elementwise maximum over the parties of their exponent vectors (``None``: every value 0), opened to
    every party; nothing else about any party's exponents is opened.

    Steps: 1. each party's vector, None as NO_MAGNITUDE (|e| <= 1075 < 2^16: ring words, see
    ``secret_union``); 2. their elementwise maximum under MPC, opened (``joint_maximum``: exact).
    Rounds: n shares + 9 ceil(log2 n) (the tournament) + 1 (reveal).  Bytes: those of n shares of k words, of
    the tournament on n x k words (``protocols.additive.compare.maximum``) and of one reveal of k words.
    Error: none.
    """
    opened = joint_maximum(session, [NO_MAGNITUDE if e is None else e for e in exponents])
    return [None if value == NO_MAGNITUDE else int(value) for value in opened]


def exchange_public(session: Session, payload: dict[str, Any], op: str) -> list[dict[str, Any]]:
    """Every party's ``payload`` (a JSON object, sent as UTF-8 bytes in a uint8 tensor), by rank; what arrives
    is told to this party's observers (the audit log) as learned under ``op``.  Rounds: 1."""
    party = session.party
    tag = party.next_tag()
    mine = torch.frombuffer(bytearray(json.dumps(payload, sort_keys=True).encode("utf-8")), dtype=torch.uint8)
    for peer in party.others:
        party.send(peer, tag, mine)
    received: list[dict[str, Any]] = []
    for rank in range(session.world_size):
        if rank == party.rank:
            received.append(payload)
            continue
        message = party.recv(rank, tag, op).cpu()
        party.notify_learned(op, tag, message)
        received.append(_parse_summary(bytes(message.numpy().tobytes()), rank))
    party.rounds += 1
    return received


def _parse_summary(data: bytes, rank: int) -> dict[str, Any]:
    """A peer's summary, checked for shape: DataError if it is not one (another version of smpc, say)."""
    try:
        summary = json.loads(data.decode("utf-8"))
        columns, kinds = summary["columns"], summary["kinds"]
        valid = (all(isinstance(name, str) for name in [*columns, summary["label"]])
                 and all(kind in ("numeric", "categorical") for kind in kinds.values())
                 and set(kinds) <= set(columns))
    except (ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise DataError(f"party {rank} sent a malformed schema summary (is it running the same smpc version?)")
    return dict(summary)
