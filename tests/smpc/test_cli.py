"""The smpc command: keygen, roster, and a session of separately started `smpc dealer` / `smpc party`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from network import read_public_key, read_secret_key
from smpc.loan.demo import plain_reference
from tests.support.cli import finish, make_roster, run_smpc, start_smpc

#: Every test here starts OS processes (smpc commands, or parties and a dealer as processes).
pytestmark = pytest.mark.processes


def test_keygen_writes_a_private_secret_and_a_public_key(tmp_path: Path) -> None:
    assert run_smpc("keygen", "node", cwd=tmp_path).returncode == 0
    secret = tmp_path / "node.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public, secret_key = read_secret_key(secret)
    assert read_public_key(tmp_path / "node.pub") == public
    assert secret_key.decode("ascii") not in (tmp_path / "node.pub").read_text()
    again = run_smpc("keygen", "node", cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_dealer_and_parties_started_separately_from_a_roster(tmp_path: Path) -> None:
    """Four separate commands, as on four hosts: every party prints the right totals and exits 0."""
    roster = make_roster(tmp_path)
    processes = [start_smpc("dealer", "--roster", roster.name, "--key", "dealer.key", cwd=tmp_path)]
    for rank in range(3):
        processes.append(start_smpc("party", "--rank", str(rank), "--roster", roster.name,
                                    "--key", f"party{rank}.key", cwd=tmp_path))
    outcomes = finish(processes)
    for code, out, err in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    expected = plain_reference(3)["total_lent"]
    for _, out, _ in outcomes[1:]:
        line = next(text for text in out.splitlines() if "total_lent" in text)
        secure, plain = (float(v) for v in line.split()[1:3])
        assert abs(secure - expected) < 1e-3 and plain == pytest.approx(expected)


def test_a_key_missing_from_the_roster_is_refused_clearly(tmp_path: Path) -> None:
    """A party started with a key the roster does not list stops at once with a one-line error."""
    roster = make_roster(tmp_path)
    assert run_smpc("keygen", "intruder", cwd=tmp_path).returncode == 0
    done = run_smpc("party", "--rank", "0", "--roster", roster.name, "--key", "intruder.key",
                    "--connect-timeout", "5", cwd=tmp_path)
    assert done.returncode == 2
    assert "does not hold the public key the roster lists for party 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_roster_says_what_to_fix(tmp_path: Path) -> None:
    roster = make_roster(tmp_path)
    document = json.loads(roster.read_text())
    document["parties"][1]["public_key"] = "not-a-key"
    roster.write_text(json.dumps(document))
    done = run_smpc("dealer", "--roster", roster.name, "--key", "dealer.key", cwd=tmp_path)
    assert done.returncode == 2
    assert "party 1" in done.stderr and "public_key" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_runs_in_process() -> None:
    done = run_smpc("demo", "--transport", "inproc")
    assert done.returncode == 0, done.stderr
    assert "total_lent" in done.stdout
