"""The smpc command as a user runs it: ``python -m smpc ...`` with this checkout first on PYTHONPATH, once to
completion or as background nodes (`smpc party`, `smpc dealer`) that are then waited for, and the keys and
roster a session of separately started nodes needs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The checkout these tests belong to (its packages are the ones the commands import).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Seconds a command (or a node, from start to exit) may take unless a test says otherwise.
TIMEOUT = 90


def repo_env() -> dict[str, str]:
    """This process's environment with the checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def smpc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smpc", *args]


def run_smpc(*args: str, cwd: Path | None = None, timeout: float = TIMEOUT,
             **options: Any) -> subprocess.CompletedProcess:
    """``smpc *args`` to completion, its output captured as text; ``options`` go to subprocess.run."""
    return subprocess.run(smpc_command(*args), cwd=cwd, env=repo_env(), capture_output=True, text=True,
                          timeout=timeout, **options)


def start_smpc(*args: str, cwd: Path) -> subprocess.Popen:
    """``smpc *args`` started in the background, stdout and stderr piped (text); end it with ``finish``."""
    return subprocess.Popen(smpc_command(*args), cwd=cwd, env=repo_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(processes: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process once it exits; any still running after ``timeout`` seconds
    (or when waiting fails) is killed, so none outlives the test."""
    outcomes = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            outcomes.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return outcomes


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def make_roster(folder: Path, parties: int = 3, *, dealer: bool = True) -> Path:
    """Keys for ``party0``.. (and ``dealer``) by `smpc keygen` and a roster on free ports (by `smpc roster`;
    without ``dealer``, a roster of the replicated protocol), written into ``folder``; returns the roster's path
    (session "test-session")."""
    names = [f"party{r}" for r in range(parties)] + (["dealer"] if dealer else [])
    for name in names:
        assert run_smpc("keygen", name, cwd=folder).returncode == 0
    ports = free_ports(len(names))
    args = ["roster", "--out", "roster.json", "--session", "test-session"]
    for rank in range(parties):
        args += ["--party", f"tcp://127.0.0.1:{ports[rank]}", f"party{rank}.pub"]
    if dealer:
        args += ["--dealer", f"tcp://127.0.0.1:{ports[-1]}", "dealer.pub"]
    done = run_smpc(*args, cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "roster.json"
