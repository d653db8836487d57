"""The joint schema: every bank agrees the public schema from its own rows at start-up, with no schema file.

Each party summarises its rows (``summarise``): the column names, each column's type, each categorical
column's categories, the label's values, and each numeric column's magnitude exponent e = ceil(log2 max|value|).
The names, types, categories and label values are exchanged in the clear (``exchange_public``); the exponents
stay secret: they are shared, their elementwise maximum over the parties is taken under MPC and only that
maximum is revealed (``joint_exponents``).  The maximum over the banks of ceil(log2 max_b) is ceil(log2) of the
joint maximum, so the result equals ``Schema.infer`` on all banks' rows put together.

What every party learns: every other party's column names, column types, categorical category sets and label
values (its own sets, not only their union), and each numeric column's joint power-of-two scale.  It learns
nothing of any other party's magnitudes beyond that scale (the comparisons open only masked values).
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
    magnitude_exponent,
    positive_label,
    scale_of,
)
from smpc.session import Session
from smpc.tensor import stack

#: Stands for "every value is 0" among the exponents: below ceil(log2 x) of any positive double (>= -1074).
NO_MAGNITUDE = -1075


@dataclass(frozen=True)
class Summary:
    """One party's summary of its rows: ``public`` is sent to the other parties, ``exponents`` never is."""

    public: dict[str, Any]  # {"columns": [...], "kinds": {column: kind}, "categories": {column: [...]},
    #                          "label": column, "labels": [...]}; kinds "numeric" or "categorical", the label
    #                          column left out
    exponents: dict[str, int | None]  # numeric column -> magnitude_exponent of this party's values


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
    public = {"columns": list(table.header), "kinds": kinds, "categories": categories, "label": label,
              "labels": sorted({row[label] for row in table.rows})}
    return Summary(public, exponents)


def agree_joint_schema(session: Session, table: Table, label: str, positive: str | None) -> Schema:
    """The public schema of all parties' rows together, agreed by every party from its own ``table``.

    Steps: 1. summarise this party's rows (``summarise``); 2. send the public summary to every other party and
    receive theirs (``exchange_public``); 3. refuse unless all parties have the same columns of the same types
    (DataError naming the column and the parties); 4. the label's positive value from the union of the label
    values (``--positive``, else the larger of exactly two); 5. the numeric scales: 2 to the power of the
    maximum exponent over the parties, under MPC (``joint_exponents``); 6. each categorical column's
    categories: the sorted union of the parties' sets.  Columns follow party 0's file order.
    Rounds: 1 (step 2) + those of ``joint_exponents``.  Bytes: each party sends its JSON summary (about the
    size of its category names) to each other party.  Error: none (equal to ``Schema.infer`` on all rows).
    """
    summary = summarise(table, label)
    summaries = exchange_public(session, summary.public, "schema summary")
    columns = agreed_columns(summaries)
    positive = positive_label(label, (value for theirs in summaries for value in theirs["labels"]), positive)
    numeric = [name for name, kind in columns if kind == "numeric"]
    exponents = joint_exponents(session, [summary.exponents[name] for name in numeric])
    categorical = [(name, sorted({c for theirs in summaries for c in theirs["categories"][name]}))
                   for name, kind in columns if kind == "categorical"]
    return Schema.build(label, positive, [(name, scale_of(e)) for name, e in zip(numeric, exponents)], categorical)


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
    """The elementwise maximum over the parties of their exponent vectors (``None``: every value 0), revealed to
    every party; nothing else about any party's exponents is opened.

    Steps: 1. each party shares its vector, exponent e (NO_MAGNITUDE for None) as the ring integer e, i.e. the
    fixed-point value e * 2^-frac_bits (exact, and inside the fixed-point range for any frac_bits >= 11, or
    int_bits >= 7); 2. the maximum over the parties' axis (``SharedTensor.max``: a tournament of secure
    comparisons, exact); 3. reveal the maximum and read each ring integer back.
    Rounds: n shares + 9 ceil(log2 n) (the tournament) + 1 (reveal).  Bytes: those of n shares of k words, of
    the tournament on n x k words (``protocols.additive.compare.maximum``) and of one reveal of k words.
    Error: none.
    """
    if not exponents:
        return []
    unit = 2.0 ** -session.encoding.frac_bits
    mine = torch.tensor([NO_MAGNITUDE if e is None else e for e in exponents], dtype=torch.float64) * unit
    shared = stack([session.share(mine if session.rank == owner else None, owner=owner)
                    for owner in range(session.world_size)])
    opened = torch.round(shared.max(dim=0).reveal() / unit).to(torch.int64).tolist()
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
        columns, kinds, categories = summary["columns"], summary["kinds"], summary["categories"]
        valid = (all(isinstance(name, str) for name in [*columns, *summary["labels"], summary["label"]])
                 and all(kind in ("numeric", "categorical") for kind in kinds.values())
                 and set(categories) == {name for name, kind in kinds.items() if kind == "categorical"}
                 and all(isinstance(c, str) for values in categories.values() for c in values)
                 and set(kinds) <= set(columns))
    except (ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise DataError(f"party {rank} sent a malformed schema summary (is it running the same smpc version?)")
    return dict(summary)
