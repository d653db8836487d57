"""The joint schema the banks agree at start-up (smpc/loan/joint_schema.py): equal to ``Schema.infer`` on all
banks' rows together, with only each numeric column's power-of-two scale opened; mismatched files refused by
column; type inference per file (the 'twelve' error); ``smpc schema --scale/--categories`` without data; and
``party_data`` agreeing in local runs the schema the plain reference infers."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import smpc
import smpc.loan.secret_union as secret_union_module
from protocols.observe import Observer
from smpc.cli import main
from smpc.loan.config import TrainConfig
from smpc.loan.data import load_all, party_data
from smpc.loan.joint_schema import agree_joint_schema, summarise
from smpc.loan.schema import DataError, Schema, Table, embedded_schema, load_table
from smpc.loan.secret_union import _buckets, _text, secret_union
from tests.support.harness import REPLICATED, Parties, run_parties
from tests.support.loan import embedded_rows, write_csv

FAMILIES = [Parties(3, "dealer"), REPLICATED]
LABEL = "creditability"


def _banks(folder: Path, change: dict[int, tuple[int, str, str]] | None = None) -> list[Path]:
    """Three bank files of 30 rows each whose maxima and categories differ: banks 0 and 1 have durations of
    at most 24 months, bank 2 one of 96 (4x; the scale 128 instead of 32); only bank 1 has purpose 'vacation'.
    ``change`` maps a bank to (row, column, value) set in its file."""
    rows = embedded_rows()
    header, body = rows[0], [list(row) for row in rows[1:91]]
    duration, purpose = header.index("duration_in_month"), header.index("purpose")
    for row in body:
        row[duration] = str(min(int(row[duration]), 24))
    banks = [body[bank::3] for bank in range(3)]
    banks[2][4][duration] = "96"
    banks[1][7][purpose] = "vacation"
    for bank, (row, column, value) in (change or {}).items():
        banks[bank][row][header.index(column)] = value
    return [write_csv(folder / f"bank{bank}.csv", header, part) for bank, part in enumerate(banks)]


def _concatenated(files: list[Path]) -> Schema:
    tables = [load_table(path) for path in files]
    return Schema.infer(tables[0].header, [row for table in tables for row in table.rows], LABEL, None)


def _agree(session: smpc.Session, files: list[Path]) -> Schema:
    return agree_joint_schema(session, load_table(files[session.rank]), LABEL, None)


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_joint_schema_equals_infer_on_all_rows(tmp_path: Path, parties: Parties) -> None:
    files = _banks(tmp_path)
    schemas = run_parties(functools.partial(_agree, files=files), parties)
    expected = _concatenated(files)
    assert schemas == [expected] * 3
    scales, categories = dict(expected.numeric), dict(expected.categorical)
    assert scales["duration_in_month"] == 128.0  # bank 2's 96; banks 0 and 1 alone would publish 32
    assert dict(Schema.infer(*_header_rows(files[0]), LABEL, None).numeric)["duration_in_month"] == 32.0
    assert "vacation" in categories["purpose"] and list(categories["purpose"]) == sorted(categories["purpose"])
    assert expected.positive == "good"  # the larger of the label's two values, as Schema.infer picks


def _header_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    table = load_table(path)
    return table.header, table.rows


class _Views(Observer):
    """Every value this party learns, as (op, value)."""

    def __init__(self) -> None:
        self.learned_values: list[tuple[str, torch.Tensor]] = []

    def learned(self, op: str, tag: int, value: torch.Tensor) -> None:
        self.learned_values.append((op, value.clone()))


def _agree_watched(session: smpc.Session, files: list[Path]) -> tuple[dict, list[tuple[str, torch.Tensor]]]:
    views = _Views()
    session.party.observers.append(views)
    table = load_table(files[session.rank])
    agree_joint_schema(session, table, LABEL, None)
    session.party.observers.remove(views)
    return summarise(table, LABEL).exponents, views.learned_values


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_only_the_union_and_the_powers_of_two_are_opened(tmp_path: Path, parties: Parties) -> None:
    """Each party's view: the others' public summaries (names and types, no category), masked openings, and
    five reveals, each a function of the union alone: the longest category's length, the union's buckets, no
    collision (found before any string is opened), the union's strings, and the joint exponents (the ring
    integer e of each scale 2^e)."""
    files = _banks(tmp_path)
    outcomes = run_parties(functools.partial(_agree_watched, files=files), parties)
    expected = _concatenated(files)
    sets = [list(categories) for _, categories in expected.categorical] + [["bad", "good"]]
    joint = [int(np.log2(scale)) for _, scale in expected.numeric]
    private = {e for exponents, _ in outcomes for e in exponents.values()}
    for _, views in outcomes:
        reveals = [value for op, value in views if op == "reveal"]
        longest, occupied, collided, strings, exponents = reveals
        assert longest.tolist() == [max(len(text.encode()) for column in sets for text in column)]
        assert torch.equal(occupied, _buckets(sets, range(len(sets)), 0)[0].to(torch.int64))
        assert sorted(_text(row) for row in strings.tolist()) == sorted(text for column in sets for text in column)
        assert collided.tolist() == [0.0] * len(sets) and exponents.tolist() == joint
        summaries = [value for op, value in views if op == "schema summary"]
        assert len(summaries) == 2 and all(value.dtype == torch.uint8 for value in summaries)
        assert not any(b"vacation" in bytes(value.tolist()) or b"radio" in bytes(value.tolist()) for value in summaries)
        assert {op for op, _ in views} <= {"reveal", "schema summary", "compare", "and", "bit conversion", "mul",
                                          "helper comparison"}
        masked = [value for op, value in views if op not in ("reveal", "schema summary")]
        words = {word for value in masked if value.dtype == torch.int64 for word in value.reshape(-1).tolist()}
        assert not words & private  # no bank's own exponent is ever opened (masked words are uniform in 2^64)


def _agree_raising(session: smpc.Session, files: list[Path]) -> str:
    try:
        _agree(session, files)
    except DataError as error:
        return str(error)
    return "agreed"


def test_different_columns_are_refused_naming_the_column(tmp_path: Path) -> None:
    files = _banks(tmp_path)
    text = files[1].read_text().replace("age_in_years", "age", 1)
    files[1].write_text(text)
    messages = run_parties(functools.partial(_agree_raising, files=files), 3)
    assert messages == ["column 'age_in_years' is in the data of parties 0 and 2 but not of party 1; every bank's "
                        "file needs the same columns"] * 3


def _agree_with_label(session: smpc.Session, files: list[Path]) -> str:
    label = "age_in_years" if session.rank == 2 else LABEL
    try:
        agree_joint_schema(session, load_table(files[session.rank]), label, None)
    except DataError as error:
        return str(error)
    return "agreed"


def test_different_labels_are_refused(tmp_path: Path) -> None:
    files = _banks(tmp_path)
    messages = run_parties(functools.partial(_agree_with_label, files=files), 3)
    assert messages[0] == ("the label column is 'creditability' at parties 0 and 1 but 'age_in_years' at party 2; "
                           "give every party the same --label")
    assert messages == [messages[0]] * 3


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_different_types_are_refused_naming_the_column(tmp_path: Path, parties: Parties) -> None:
    files = _banks(tmp_path)
    table = load_table(files[2])
    header = table.header
    rows = [[("old" if int(row["age_in_years"]) > 40 else "young") if name == "age_in_years" else row[name]
             for name in header] for row in table.rows]
    write_csv(files[2], header, rows)
    messages = run_parties(functools.partial(_agree_raising, files=files), parties)
    assert messages == ["column 'age_in_years' is numeric at parties 0 and 1 but categorical at party 2; every "
                        "bank's values of a column must all be numbers or all be text"] * 3


def test_a_word_among_numbers_is_named_by_file_and_line(tmp_path: Path) -> None:
    """'twelve' in a numeric column: the file's line (the header is line 1), whether the schema is inferred,
    agreed or declared; a number among words is named the same way."""
    files = _banks(tmp_path, {1: (24, "duration_in_month", "twelve"), 2: (3, "purpose", "12")})
    bank1, bank2 = load_table(files[1]), load_table(files[2])
    twelve = (f"{files[1]}, line 26: 'twelve' in column 'duration_in_month' is not a number (the column's other "
              "values are numbers)")
    with pytest.raises(DataError) as raised:
        summarise(bank1, LABEL)
    assert str(raised.value) == twelve
    with pytest.raises(DataError) as raised:
        Schema.infer(bank1.header, bank1.rows, LABEL, None, bank1.place)
    assert str(raised.value) == twelve
    with pytest.raises(DataError) as raised:
        summarise(bank2, LABEL)
    assert str(raised.value).startswith(f"{files[2]}, line 5: '12' in column 'purpose' is a number but the "
                                        "column's other values are not")
    declared = Schema.load(embedded_schema())  # every category the data's documentation lists
    with pytest.raises(DataError) as raised:
        declared.encode(bank1.rows, place=bank1.place)
    assert str(raised.value) == (f"{files[1]}, line 26: 'twelve' in column 'duration_in_month' is not a number "
                                 "(the schema declares the column numeric)")


def test_lines_count_as_the_file_does(tmp_path: Path) -> None:
    """Blank lines are skipped but still counted, so a row's line is the one an editor shows."""
    path = tmp_path / "gaps.csv"
    path.write_text("a,label\n1,x\n\n2,y\n\nthree,x\n4,y\n")
    table = load_table(path)
    assert table.lines == [2, 4, 6, 7]
    with pytest.raises(DataError, match=r"gaps.csv, line 6: 'three' in column 'a' is not a number"):
        Schema.infer(table.header, table.rows, "label", None, table.place)


def _held_data(session: smpc.Session, config: TrainConfig) -> tuple[Schema, np.ndarray, np.ndarray | None]:
    data = party_data(config, session)
    return data.schema, data.features, data.test_features


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_local_runs_agree_the_schema_the_plain_reference_infers(parties: Parties) -> None:
    """``smpc train``'s parties agree the joint schema from the rows each holds; it equals the one inferred
    from all rows (the plain reference's), and so does every encoded row."""
    config = TrainConfig(max_rows=150, epochs=1)
    schema, features, _ = load_all(config)
    held = run_parties(functools.partial(_held_data, config=config), parties)
    assert all(theirs == schema for theirs, _, _ in held)
    together = np.concatenate([mine for _, mine, _ in held] + [held[0][2]])
    assert sorted(map(tuple, together)) == sorted(map(tuple, features))
    assert held[1][2] is None and held[2][2] is None


def test_schema_written_from_flags_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema.json"
    code = main(["schema", "--scale", "duration=128", "--categories", r"housing=own,rent,for free\, paid",
                 "--scale", "amount=32768", "--label", "default", "--positive", "yes", "--out", str(out)])
    assert code == 0
    assert Schema.load(out) == Schema("default", "yes", (("duration", 128.0), ("amount", 32768.0)),
                                      (("housing", ("own", "rent", "for free, paid")),))
    assert "2 numeric and 1 categorical columns, 5 features" in capsys.readouterr().out


def test_flags_replace_inferred_entries(tmp_path: Path) -> None:
    """With --data, the columns keep the data's order; a flag replaces the inferred entry (its values are not
    inferred, so a column mixing numbers and text can be declared categorical, as its error suggests)."""
    files = _banks(tmp_path, {0: (3, "purpose", "12")})
    out = tmp_path / "schema.json"
    assert main(["schema", "--data", str(files[0]), "--out", str(out)]) == 2  # '12' among purposes
    assert main(["schema", "--data", str(files[0]), "--scale", "duration_in_month=256", "--categories",
                 "purpose=car (new),12", "--scale", "purpose=4", "--out", str(out)]) == 2  # given twice
    assert main(["schema", "--data", str(files[0]), "--scale", "duration_in_month=256", "--categories",
                 "purpose=car (new),12", "--categories", "age_in_years=young,old", "--out", str(out)]) == 0
    written, header = Schema.load(out), load_table(files[0]).header
    assert dict(written.numeric)["duration_in_month"] == 256.0
    assert dict(written.categorical)["purpose"] == ("car (new)", "12")
    assert dict(written.categorical)["age_in_years"] == ("young", "old")
    for entries in (written.numeric, written.categorical):  # each kind in the data's column order
        names = [name for name, _ in entries]
        assert names == sorted(names, key=header.index)
    assert {name for name, _ in written.numeric + written.categorical} == set(header) - {LABEL}


@pytest.mark.parametrize(("flags", "message"), [
    (["--scale", "age=63"], "--scale age=63: the scale must be a power of two greater than 0"),
    (["--scale", "age=0"], "--scale age=0: the scale must be a power of two greater than 0"),
    (["--scale", "age"], "--scale needs COLUMN=VALUE, got 'age'"),
    (["--categories", "job=a,,b"], "the categories must be distinct and non-empty"),
    (["--categories", "job=a,b,a"], "the categories must be distinct and non-empty"),
    (["--scale", "age=64", "--categories", "age=a,b"], "column 'age' is given twice"),
    (["--scale", "creditability=2"], "'creditability' is the label column, not a feature"),
    (["--scale", "age=64"], "without --data, give the label's positive value: --positive VALUE"),
])
def test_bad_schema_flags_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                       message: str) -> None:
    extra = ["--positive", "bad"] if "without --data" not in message else []
    assert main(["schema", *flags, *extra, "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smpc schema: error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.json").exists()


def test_a_flag_for_a_column_the_data_lacks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _banks(tmp_path)
    assert main(["schema", "--data", str(files[0]), "--scale", "salary=1024", "--out", str(tmp_path / "s.json")]) == 2
    assert "--scale salary=...: no column 'salary' in the data; columns are: " in capsys.readouterr().err


def test_tables_keep_their_lines_when_cut() -> None:
    table = Table("bank.csv", ["a"], [{"a": "1"}, {"a": "2"}, {"a": "3"}], [2, 3, 5])
    assert table.take([2, 0]).lines == [5, 2] and table.head(2).lines == [2, 3] and table.head(None) == table
    assert table.take([2]).place(0) == "bank.csv, line 5"


#: Each party's sets of two columns: 'x' is held by all, the others by one or two parties.
SETS = [[["x", "a"], ["1"]], [["x", "ä-only", "a longer category, with a comma"], ["1", "2"]], [["x"], ["3"]]]


def _union(session: smpc.Session) -> list[list[str]] | str:
    try:
        return secret_union(session, SETS[session.rank], ["first", "second"])
    except DataError as error:
        return str(error)


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_colliding_buckets_are_tried_again(monkeypatch: pytest.MonkeyPatch, parties: Parties) -> None:
    """With 2 buckets at first the union's strings collide (attempt 0 in both columns, attempt 1, with 8, in the
    first: the salted hashes are fixed, so this is deterministic); the retries still find the exact union, and
    a column with more strings than buckets at the last attempt is refused naming it (declare the schema)."""
    tried: list[tuple[int, tuple[int, ...]]] = []
    attempt = secret_union_module._attempt

    def counted(session: smpc.Session, sets: list, columns: list[int], longest: int, salt: int) -> tuple:
        tried.append((salt, tuple(columns)))
        return attempt(session, sets, columns, longest, salt)

    monkeypatch.setattr(secret_union_module, "_attempt", counted)
    monkeypatch.setattr(secret_union_module, "BUCKETS", 2)
    union = [["a", "a longer category, with a comma", "x", "ä-only"], ["1", "2", "3"]]
    assert run_parties(_union, parties) == [union] * 3
    assert sorted(set(tried)) == [(0, (0, 1)), (1, (0, 1)), (2, (0,))] and len(tried) == 9
    monkeypatch.setattr(secret_union_module, "BUCKETS", 3)
    monkeypatch.setattr(secret_union_module, "ATTEMPTS", 1)
    assert run_parties(_union, parties) == ["column 'first' has too many categories to agree them without "
                                            "revealing each bank's own; declare the schema instead (smpc schema "
                                            "--categories, then --schema FILE)"] * 3


def _union_watched(session: smpc.Session) -> list[tuple[str, torch.Tensor]]:
    views = _Views()
    session.party.observers.append(views)
    secret_union(session, SETS[session.rank], ["first", "second"])
    session.party.observers.remove(views)
    return views.learned_values


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_a_collision_opens_no_string_of_its_column(monkeypatch: pytest.MonkeyPatch, parties: Parties) -> None:
    """With 2 buckets the columns collide (attempts 0 and 1, as above); the collision is found under MPC before
    any string is opened, so every opening of strings holds whole columns of the union, each string once: never
    the one string of a bucket's first holder that would tell which party holds it."""
    monkeypatch.setattr(secret_union_module, "BUCKETS", 2)
    union = [["a", "a longer category, with a comma", "x", "ä-only"], ["1", "2", "3"]]
    for views in run_parties(_union_watched, parties):
        reveals = [value for op, value in views if op == "reveal"]
        width = 1 + -(-max(len(text.encode()) for column in union for text in column) // 2)  # a string's words
        opened = [sorted(_text(row) for row in value.tolist()) for value in reveals
                  if value.dim() == 2 and value.shape[1] == width]
        assert sorted(opened) == sorted([union[0]] + [union[1]]) or sorted(opened) == [sorted(union[0] + union[1])]
