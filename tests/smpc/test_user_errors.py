"""Mistakes a user makes get one clear line saying what to fix, never a traceback from deep inside: bad input
values, bad CSV files, a roster whose port is taken."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pytest
import torch

import smpc
from smpc.loan.schema import embedded_dataset
from tests.support.cli import make_roster, run_smpc
from tests.support.harness import run_parties


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), "NaN"), (float("inf"), "infinit"), (-float("inf"), "infinit"), (2.0 ** 15, "range"),
    (-1e9, "range"),
])
def test_bad_input_values_are_refused_by_the_owner(value: float, message: str) -> None:
    """NaN, infinities and values outside |v| < 2^int_bits: ValueError on the owner, before anything is sent."""
    def program(session: smpc.Session) -> str:
        if session.rank != 0:
            return "not the owner"
        try:
            session.share(torch.tensor([1.0, value], dtype=torch.float64), owner=0)
        except ValueError as error:
            return f"refused: {error}"
        return "accepted"

    outcome = run_parties(program, 2, recv_timeout=5.0)[0]
    assert outcome.startswith("refused") and message.lower() in outcome.lower(), outcome


def _csv(path: Path, change: callable[[list[list[str]]], None]) -> Path:
    with embedded_dataset().open(newline="") as handle:
        rows = list(csv.reader(handle))[:60]
    change(rows)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _relabel(rows: list[list[str]]) -> None:
    column = rows[0].index("creditability")
    for row in rows[1:]:
        row[column] = "good"


def _blank(rows: list[list[str]]) -> None:
    rows[5][2] = ""


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "missing.csv"], "line 6: missing value in column 'credit_history'; fill or drop such rows"),
    (["--data", "onelabel.csv"], "label column 'creditability' has only one value (good); training needs two"),
    (["--data", "ok.csv", "--label", "nosuch"], "label column 'nosuch' not found; columns are:"),
    (["--data", "nosuch.csv"], "nosuch.csv: no such file"),
    (["--epochs", "0"], "must be positive"),
])
@pytest.mark.processes
def test_bad_data_and_options_get_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    _csv(tmp_path / "missing.csv", _blank)
    _csv(tmp_path / "onelabel.csv", _relabel)
    _csv(tmp_path / "ok.csv", lambda rows: None)
    done = run_smpc("train", *args, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.processes
def test_a_port_in_use_says_what_to_fix(tmp_path: Path) -> None:
    """Party 0's roster port is held by another program: the party exits non-zero within its connect
    timeout, naming the address and the fix, without a traceback."""
    roster = make_roster(tmp_path)
    import json

    address = json.loads(roster.read_text())["parties"][0]["address"]
    holder = socket.socket()
    holder.bind(("127.0.0.1", int(address.rsplit(":", 1)[1])))
    holder.listen()
    try:
        done = run_smpc("party", "--rank", "0", "--roster", roster.name, "--key", "party0.key",
                        "--connect-timeout", "5", cwd=tmp_path)
    finally:
        holder.close()
    assert done.returncode != 0
    assert f"cannot bind {address!r}: Address already in use" in done.stderr
    assert "give this node another port in the roster" in done.stderr and "Traceback" not in done.stderr
