"""Errors a new user meets in the first hour, each one line: Ctrl-C during start-up (no child tracebacks, nothing
left running), output piped into a reader that quits early, a node that cannot bind its roster address (its
peers learn it at once), `smpc roster --bind` and its refusals, and the defaults `--help` states."""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from network import BindError, Roster, write_keypair
from smpc import cli, hosts
from tests.support.cli import finish, free_ports, repo_env, run_smpc, smpc_command, start_smpc

#: Seconds a started command gets to reach the line we wait for, and then to exit.
PATIENCE = 90.0


def _lines(stream: object) -> queue.Queue:
    """The lines of ``stream`` as they come, read by a thread (so a wait can give up)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, text: str) -> list[str]:
    """Lines up to the first containing ``text``; fails if the stream ends or PATIENCE passes first."""
    seen: list[str] = []
    deadline = time.monotonic() + PATIENCE
    while True:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        assert line is not None, f"output ended before {text!r}: {seen}"
        seen.append(line)
        if text in line:
            return seen


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group ``group``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members


def _wait_for_starting_children(group: int) -> None:
    """Until multiprocessing starts the command's parties: its fork server (which imports smpc and torch for a
    second or more before it forks anyone) or a spawned child is in the group.  A fixed sleep would not do: a
    warm machine runs the whole demo in about 1.5 s, and a SIGINT that comes as the interpreter exits kills it
    with the default action, where the test wants the start-up's."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        for pid in _group_members(group):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"multiprocessing.forkserver" in command or b"spawn_main" in command:
                time.sleep(0.2)
                return
        time.sleep(0.02)
    raise AssertionError("the command started no party process")


def _roster_here(folder: Path, addresses: list[str]) -> Path:
    """Keys ``party<rank>.key`` / ``.pub`` and ``roster.json`` (replicated: no dealer) for these party addresses,
    made in this process rather than by `smpc keygen` and `smpc roster` (four commands fewer)."""
    path = folder / "roster.json"
    Roster.from_dict({"session": "test-session", "parties": [
        {"address": address, "public_key": write_keypair(folder / f"party{rank}").decode("ascii")}
        for rank, address in enumerate(addresses)]}).save(path)
    return path


def _as_from_a_terminal() -> None:
    """SIGINT handled as in a command started from a terminal.  A test run that is itself a background job of a
    non-interactive shell (`bash .ci/run &`) inherits SIGINT ignored, and so would the command, which then rightly
    runs to its end: Python keeps an inherited ignore rather than raising KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.processes
@pytest.mark.parametrize(("args", "start_line"), [
    (["train", "--epochs", "1", "--max-rows", "90"], "training rows split among"),
    (["demo"], "smpc demo: 3 banks"),
    (["party", "--rank", "0", "--roster", "roster.json", "--key", "party0.key"], "smpc party 0: connecting"),
])
def test_ctrl_c_during_start_up_prints_one_line_and_leaves_no_process(tmp_path: Path, args: list[str],
                                                                      start_line: str) -> None:
    """SIGINT to the whole process group (what Ctrl-C in a terminal does) once the parties start (`smpc party`:
    while it waits for its peers): exit 130 with `smpc CMD: interrupted`, no traceback from the command or any
    child, no process of the group left."""
    _roster_here(tmp_path, [f"tcp://127.0.0.1:{port}" for port in free_ports(3)])
    process = subprocess.Popen(smpc_command(*args), cwd=tmp_path, env=repo_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_as_from_a_terminal)
    try:
        _wait_for(_lines(process.stdout), start_line)
        if args[0] == "party":
            time.sleep(1.0)  # it waits for its peers, who never come
        else:
            _wait_for_starting_children(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=PATIENCE)
        stderr = process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr == f"smpc {args[0]}: interrupted\n", stderr
    deadline = time.monotonic() + PATIENCE  # the resource tracker leaves once it sees us gone
    while _group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(process.pid) == []


def _model_shares(folder: Path) -> list[str]:
    """Two parties' shares of a 30 x 1 linear model in `smpc train --out`'s format, made here without a run."""
    weight = np.arange(30, dtype=np.int64).reshape(30, 1) << 16
    first = np.random.default_rng(7).integers(-(2**62), 2**62, size=weight.shape, dtype=np.int64)  # not secret
    meta = {"format": 1, "parties": 2, "protocol": "dealer", "frac_bits": 16,
            "layout": [{"type": "Linear", "in": 30, "out": 1}]}
    paths = []
    for rank, share in enumerate((first, weight - first)):
        path = folder / f"party{rank}.npz"
        np.savez(path, meta=np.array(json.dumps({**meta, "rank": rank})), **{"share/weight": share})
        paths.append(path.name)
    return paths


@pytest.mark.processes
def test_a_reader_that_quits_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`smpc reveal-model ... | head` where the reader is gone before we write: exit 141 (as if killed by
    SIGPIPE, like cat), nothing on stderr, no BrokenPipeError traceback."""
    files = _model_shares(tmp_path)
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(smpc_command("reveal-model", *files), cwd=tmp_path, env=repo_env(), stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=PATIENCE)
    finally:
        os.close(writer)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


@pytest.mark.processes
def test_a_node_that_cannot_bind_tells_the_waiting_peers(tmp_path: Path) -> None:
    """Party 1's roster address is not this host's (192.0.2.1, TEST-NET-1): it says what to check, and parties
    0 and 2, started first with the default 300 s connect timeout, fail at once naming it instead of waiting."""
    ports = free_ports(3)
    port = ports[1]
    roster_path = _roster_here(tmp_path, [f"tcp://127.0.0.1:{ports[0]}", f"tcp://192.0.2.1:{port}",
                                          f"tcp://127.0.0.1:{ports[2]}"])
    waiting = [start_smpc("party", "--rank", str(rank), "--roster", roster_path.name, "--key", f"party{rank}.key",
                          cwd=tmp_path) for rank in (0, 2)]
    try:
        for node in waiting:
            _wait_for(_lines(node.stdout), "connecting")
        failing = run_smpc("party", "--rank", "1", "--roster", roster_path.name, "--key", "party1.key",
                           cwd=tmp_path, timeout=PATIENCE)
    finally:
        outcomes = finish(waiting, timeout=PATIENCE)
    reason = f"cannot bind 'tcp://192.0.2.1:{port}': Cannot assign requested address"
    assert failing.returncode == 1
    assert failing.stderr == (
        f"smpc party: failed: {reason}; no interface of this host has that address: check the rank this node was "
        "started with (--rank) and the roster's address for party 1 (a \"bind\": \"tcp://0.0.0.0:PORT\" in that "
        "roster entry listens on every interface)\n")
    for code, _, stderr in outcomes:
        assert code == 1, stderr
        assert len(stderr.splitlines()) == 1 and stderr.startswith("smpc party: failed: "), stderr
        assert f"party 1 (tcp://192.0.2.1:{port}) could not start: {reason}" in stderr, stderr


def _option_blocks(help_text: str) -> dict[str, str]:
    """Each option's help as one string, keyed by its first flag (argparse may wrap it over several lines)."""
    blocks: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            flag = match.group(1)
            blocks[flag] = line
        elif flag and line.startswith("    "):
            blocks[flag] += " " + line.strip()
        else:
            flag = None
    return blocks


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    commands = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_help_states_every_default(command: str) -> None:
    """Every option with a default value says it in `smpc CMD --help`: the value itself, or in words."""
    parser = _subcommands()[command]
    blocks = _option_blocks(parser.format_help())
    for action in parser._actions:
        if action.option_strings and not (action.default is None or action.default is False
                                          or action.default == argparse.SUPPRESS):
            assert "default" in blocks[action.option_strings[0]], (command, action.option_strings)


def test_help_gives_the_timeouts_defaults() -> None:
    blocks = _option_blocks(_subcommands()["party"].format_help())
    assert blocks["--connect-timeout"].endswith("(default 300)")
    assert blocks["--recv-timeout"].endswith("(default 120)")
    assert blocks["--epochs"].endswith("passes over the training rows (default 10)")
    assert blocks["--momentum"].endswith("SGD momentum (default 0.0)")
    assert blocks["--seed"].endswith("(default 0)")


def _roster_args(folder: Path, *extra: str, dealer: bool = False) -> list[str]:
    args = ["roster", "--out", str(folder / "roster.json"), "--session", "s"]
    for rank in range(3):
        args += ["--party", f"tcp://10.0.0.{rank + 1}:5555", str(folder / f"party{rank}.pub")]
    if dealer:
        args += ["--dealer", "tcp://10.0.0.9:5555", str(folder / "dealer.pub")]
    return args + list(extra)


@pytest.fixture
def public_keys(tmp_path: Path) -> Path:
    for name in ("party0", "party1", "party2", "dealer"):
        write_keypair(tmp_path / name)
    return tmp_path


def test_roster_bind_writes_the_bind_field(public_keys: Path) -> None:
    args = _roster_args(public_keys, "--bind", "1=tcp://0.0.0.0:5555", "--bind", "dealer=tcp://0.0.0.0:6000",
                        dealer=True)
    assert cli.main(args) == 0
    roster = Roster.load(public_keys / "roster.json")
    assert roster.bind_addresses == {0: "tcp://10.0.0.1:5555", 1: "tcp://0.0.0.0:5555", 2: "tcp://10.0.0.3:5555",
                                     3: "tcp://0.0.0.0:6000"}
    assert roster.addresses[1] == "tcp://10.0.0.2:5555"


@pytest.mark.parametrize(("bind", "message"), [
    ("3=tcp://0.0.0.0:5555", "--bind 3=tcp://0.0.0.0:5555: '3' is not a node of this roster (a party rank 0..2; "
                             "it has no dealer)"),
    ("dealer=tcp://0.0.0.0:5555", "--bind dealer=tcp://0.0.0.0:5555: 'dealer' is not a node of this roster (a "
                                  "party rank 0..2; it has no dealer)"),
    ("two=tcp://0.0.0.0:5555", "'two' is not a node of this roster"),
    ("tcp://0.0.0.0:5555", "--bind tcp://0.0.0.0:5555: give RANK=ADDRESS, e.g. 1=tcp://0.0.0.0:5555"),
    ("1=0.0.0.0:5555", "roster entry for party 1: bind must look like tcp://host:port with a port in 1..65535, "
                       "got '0.0.0.0:5555'"),
])
def test_roster_bind_refuses_a_bad_flag_in_one_line(public_keys: Path, capsys: pytest.CaptureFixture,
                                                    bind: str, message: str) -> None:
    assert cli.main(_roster_args(public_keys, "--bind", bind)) == 2
    error = capsys.readouterr().err
    assert error.startswith("smpc roster: error: ") and message in error and error.count("\n") == 1, error
    assert not (public_keys / "roster.json").exists()


def test_roster_bind_refuses_a_node_given_twice(public_keys: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(_roster_args(public_keys, "--bind", "1=tcp://0.0.0.0:5555", "--bind", "1=tcp://0.0.0.0:6")) == 2
    assert capsys.readouterr().err == ("smpc roster: error: --bind 1=tcp://0.0.0.0:6: that node already has --bind "
                                       "1=tcp://0.0.0.0:5555\n")


@pytest.mark.parametrize("holder", ["nobody: an address this host lacks", "another process holds the port"])
def test_a_node_tells_its_peers_unless_its_port_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         holder: str) -> None:
    """A port in use may be held by this very node started twice, whose session must go on: no notice then."""
    told: list[str] = []
    monkeypatch.setattr(hosts, "tell_peers_we_failed", lambda *args, reason, **kwargs: told.append(reason))
    port = free_ports(1)[0]
    with socket.socket() as held:
        address = "tcp://192.0.2.1:9" if holder.startswith("nobody") else f"tcp://127.0.0.1:{port}"
        if not holder.startswith("nobody"):
            held.bind(("127.0.0.1", port))
            held.listen()
        roster = Roster.load(_roster_here(tmp_path, [address, *(f"tcp://127.0.0.1:{p}" for p in free_ports(2))]))
        with pytest.raises(BindError) as caught:
            hosts.connect_node(0, roster, tmp_path / "party0.key", hosts.roster_options(roster, connect_timeout=1))
    assert caught.value.in_use == (not holder.startswith("nobody"))
    assert told == ([] if caught.value.in_use else [str(caught.value)])
