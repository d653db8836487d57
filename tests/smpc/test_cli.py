"""The smpc command: keygen, roster, and a session of separately started `smpc dealer` / `smpc party`."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from network import read_public_key, read_secret_key
from smpc.loan.demo import plain_reference

TIMEOUT = 90


def _smpc(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "smpc", *args]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def _make_roster(tmp_path: Path, parties: int = 3) -> Path:
    names = [f"party{r}" for r in range(parties)] + ["dealer"]
    for name in names:
        assert _run(_smpc("keygen", name, cwd=tmp_path), tmp_path).returncode == 0
    ports = _free_ports(len(names))
    args = ["roster", "--out", "roster.json", "--session", "test-session"]
    for name, port in zip(names[:-1], ports):
        args += ["--party", f"tcp://127.0.0.1:{port}", f"{name}.pub"]
    args += ["--dealer", f"tcp://127.0.0.1:{ports[-1]}", "dealer.pub"]
    done = _run(_smpc(*args, cwd=tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "roster.json"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(processes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    outcomes = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            outcomes.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return outcomes


def test_keygen_writes_a_private_secret_and_a_public_key(tmp_path: Path) -> None:
    assert _run(_smpc("keygen", "node", cwd=tmp_path), tmp_path).returncode == 0
    secret = tmp_path / "node.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public, secret_key = read_secret_key(secret)
    assert read_public_key(tmp_path / "node.pub") == public
    assert secret_key.decode("ascii") not in (tmp_path / "node.pub").read_text()
    again = _run(_smpc("keygen", "node", cwd=tmp_path), tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_dealer_and_parties_started_separately_from_a_roster(tmp_path: Path) -> None:
    """Four separate commands, as on four hosts: every party prints the right totals and exits 0."""
    roster = _make_roster(tmp_path)
    processes = [_start(_smpc("dealer", "--roster", roster.name, "--key", "dealer.key", cwd=tmp_path), tmp_path)]
    for rank in range(3):
        processes.append(_start(_smpc("party", "--rank", str(rank), "--roster", roster.name,
                                      "--key", f"party{rank}.key", cwd=tmp_path), tmp_path))
    outcomes = _finish(processes)
    for code, out, err in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    expected = plain_reference(3)["total_lent"]
    for code, out, _ in outcomes[1:]:
        line = next(l for l in out.splitlines() if "total_lent" in l)
        secure, plain = (float(v) for v in line.split()[1:3])
        assert abs(secure - expected) < 1e-3 and plain == pytest.approx(expected)


def test_a_key_missing_from_the_roster_is_refused_clearly(tmp_path: Path) -> None:
    """A party started with a key the roster does not list stops at once with a one-line error."""
    roster = _make_roster(tmp_path)
    assert _run(_smpc("keygen", "intruder", cwd=tmp_path), tmp_path).returncode == 0
    done = _run(_smpc("party", "--rank", "0", "--roster", roster.name, "--key", "intruder.key",
                      "--connect-timeout", "5", cwd=tmp_path), tmp_path)
    assert done.returncode == 2
    assert "does not hold the public key the roster lists for party 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_roster_says_what_to_fix(tmp_path: Path) -> None:
    roster = _make_roster(tmp_path)
    document = json.loads(roster.read_text())
    document["parties"][1]["public_key"] = "not-a-key"
    roster.write_text(json.dumps(document))
    done = _run(_smpc("dealer", "--roster", roster.name, "--key", "dealer.key", cwd=tmp_path), tmp_path)
    assert done.returncode == 2
    assert "party 1" in done.stderr and "public_key" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_runs_in_process() -> None:
    done = subprocess.run([sys.executable, "-m", "smpc", "demo", "--transport", "inproc"], env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "total_lent" in done.stdout
