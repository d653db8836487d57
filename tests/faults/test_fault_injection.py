"""Fault injection: a training run of three `smpc party` processes and an `smpc dealer` over CurveZMQ on
127.0.0.1, each started on its own as on four hosts (or, in the replicated protocol, three parties and no
dealer); at a random point of the run one of the nodes is killed (SIGKILL) or frozen (SIGSTOP).  Every
survivor must exit non-zero within 10 seconds with an error naming the lost node, nothing may hang, and no
port of the roster may stay bound.

20 injection points per CI run for the dealer protocol and 6 for the replicated one, drawn from a seeded
generator (test-only randomness; the seed of each case is in its id, so a failure is replayed with ``-k``).
Set SMPC_FAULT_CASES (and SMPC_REPLICATED_FAULT_CASES) for more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from network import read_public_key, write_keypair
from tests.support.cli import free_ports, start_smpc
from tests.support.loan import bank_files, save_schema

CASES = int(os.environ.get("SMPC_FAULT_CASES", "20"))
REPLICATED_CASES = int(os.environ.get("SMPC_REPLICATED_FAULT_CASES", "6"))
#: The issue's bound on how long a survivor may take to notice and exit.
SURVIVOR_BOUND_S = 10.0
NAMES = ["party 0", "party 1", "party 2", "dealer"]

#: Every test here starts OS processes (smpc commands, or parties and a dealer as processes).
pytestmark = pytest.mark.processes


def _port_free(port: int) -> bool:
    """Whether a new listener can take ``port`` (with SO_REUSEADDR, as ZeroMQ's listeners do: connections
    left in TIME_WAIT do not hold a port against a restart)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys of the four nodes, three bank files and the public schema, made once (in this process)."""
    made = tmp_path_factory.mktemp("faults")
    for name in ("party0", "party1", "party2", "dealer"):
        write_keypair(made / name)
    bank_files(made)
    save_schema(made / "schema.json")
    return made


def _fresh_roster(folder: Path, case: int, protocol: str) -> tuple[str, list[int]]:
    """A roster on fresh ports for this case (every case is its own session); no dealer for replicated."""
    ports = free_ports(4 if protocol == "dealer" else 3)
    def node(name: str, port: int) -> dict[str, str]:
        return {"address": f"tcp://127.0.0.1:{port}",
                "public_key": read_public_key(folder / f"{name}.pub").decode("ascii")}
    document = {"session": f"fault-{protocol}-{case}", "frac_bits": 16,
                "parties": [node(f"party{r}", ports[r]) for r in range(3)]}
    if protocol == "dealer":
        document["dealer"] = node("dealer", ports[3])
    name = f"roster-{protocol}-{case}.json"
    (folder / name).write_text(json.dumps(document))
    return name, ports


@pytest.mark.parametrize("protocol, case", [("dealer", case) for case in range(CASES)]
                         + [("replicated", case) for case in range(REPLICATED_CASES)])
def test_a_lost_node_stops_every_survivor(protocol: str, case: int, folder: Path) -> None:
    """One random node, SIGKILL or SIGSTOP, at a random moment up to 3 s into training (see module doc)."""
    rng = random.Random(1000 + case + (0 if protocol == "dealer" else 500))
    victim = rng.randrange(4 if protocol == "dealer" else 3)
    how = rng.choice([signal.SIGKILL, signal.SIGSTOP])
    delay = rng.uniform(0.0, 3.0)
    roster, ports = _fresh_roster(folder, case, protocol)
    processes = []
    for rank in range(3):
        processes.append(start_smpc("party", "--rank", str(rank), "--roster", roster, "--key",
                                    f"party{rank}.key", "--data", f"bank{rank}.csv", "--schema", "schema.json",
                                    "--epochs", "200", "--recv-timeout", "60", cwd=folder))
    if protocol == "dealer":
        processes.append(start_smpc("dealer", "--roster", roster, "--key", "dealer.key", cwd=folder))
    try:
        _wait_for_training(processes[0])
        time.sleep(delay)
        assert all(p.poll() is None for p in processes), "the run ended before the fault"
        os.kill(processes[victim].pid, how)
        struck = time.monotonic()
        survivors = [p for i, p in enumerate(processes) if i != victim]
        outcomes = []
        for process in survivors:
            left = SURVIVOR_BOUND_S - (time.monotonic() - struck)
            try:
                _, err = process.communicate(timeout=max(left, 0.1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"case {case}: {NAMES[processes.index(process)]} still running "
                            f"{SURVIVOR_BOUND_S:g} s after {how.name} of {NAMES[victim]}")
            outcomes.append((NAMES[processes.index(process)], process.returncode, err))
        for name, code, err in outcomes:
            assert code != 0, f"{name} exited 0 after {how.name} of {NAMES[victim]}"
            assert NAMES[victim] in err, f"{name}'s error does not name {NAMES[victim]}: {err[-800:]}"
            assert "Traceback" not in err, f"{name} printed a traceback: {err[-2000:]}"
    finally:
        for process in processes:
            if process.poll() is None:
                try:
                    os.kill(process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                process.kill()
            process.communicate()
    deadline = time.monotonic() + 5
    while not all(_port_free(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_port_free(p) for p in ports), f"case {case}: a roster port is still bound"


def _wait_for_training(owner: subprocess.Popen, timeout: float = 90.0) -> None:
    """Block until party 0 reports its first training progress line on stderr (training runs)."""
    assert owner.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = owner.stderr.readline()
        if not line:
            raise AssertionError("party 0 ended before training")
        if "batch" in line:
            return
    raise AssertionError("training did not start in time")
