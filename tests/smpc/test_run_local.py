"""run_local end to end: parties and a dealer as processes over ZeroMQ + CurveZMQ on 127.0.0.1."""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import sys
import time
import types

import pytest
import torch

import smpc
from smpc.runner import check_spawnable
from tests.support.harness import run_parties

X = torch.tensor([[1.5, -2.25, 3.0], [0.5, 4.0, -1.0]], dtype=torch.float64)
Y = torch.tensor([[2.0, 0.5], [-1.5, 1.0], [0.25, -3.0]], dtype=torch.float64)


def _arithmetic(session: smpc.Session) -> dict:
    """Share X from party 0 and Y from the last party; products, a matmul and a reveal to party 1 only."""
    x = session.share(X if session.rank == 0 else None, owner=0)
    last = session.world_size - 1
    y = session.share(Y if session.rank == last else None, owner=last)
    return {
        "matmul": (x @ y).reveal(),
        "mul": (x * x).reveal(),
        "to_one": (x.sum() * 2).reveal(to=1),
        "endpoint": session.party.transport.endpoint,
        "stats": session.stats.as_dict(),
    }


@pytest.mark.processes
@pytest.mark.parametrize("parties", [2, 3])
def test_processes_compute_and_leave_nothing_behind(parties: int) -> None:
    """Every party returns the right values; no child process or bound port is left after the run."""
    results = run_parties(_arithmetic, parties, transport="zmq")
    for rank, result in enumerate(results):
        assert torch.allclose(result["matmul"], X @ Y, atol=1e-3)
        assert torch.allclose(result["mul"], X * X, atol=1e-3)
        if rank == 1:
            assert abs(float(result["to_one"]) - 2 * float(X.sum())) < 1e-3
        else:
            assert result["to_one"] is None
        assert result["stats"]["rounds"] > 0 and result["stats"]["bytes_sent"] > 0
    assert multiprocessing.active_children() == []
    for result in results:
        port = int(result["endpoint"].rsplit(":", 1)[1])
        with socket.socket() as probe:
            # SO_REUSEADDR tolerates TIME_WAIT remnants of closed connections, not a live listener.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()


def _fail_on(rank: int, session: smpc.Session) -> None:
    x = session.share(torch.ones(3) if session.rank == 0 else None, owner=0)
    if session.rank == rank:
        raise ValueError(f"party {rank} refuses to go on")
    (x * x).reveal()


@pytest.mark.processes
def test_first_failure_is_reraised_naming_its_party() -> None:
    """A party's exception comes back as PartyError with its rank; the others stop, nothing hangs."""
    with pytest.raises(smpc.PartyError) as caught:
        run_parties(functools.partial(_fail_on, 1), 3, transport="zmq")
    assert caught.value.rank == 1
    assert "party 1 failed: ValueError: party 1 refuses to go on" in str(caught.value)
    assert multiprocessing.active_children() == []


def _die_on(rank: int, session: smpc.Session) -> None:
    x = session.share(torch.ones(100) if session.rank == 0 else None, owner=0)
    if session.rank == rank:
        os._exit(9)  # like SIGKILL: no goodbye, no report
    for _ in range(50):
        x = x * x
    x.reveal()


@pytest.mark.processes
def test_a_dead_party_stops_the_others() -> None:
    """A party that dies without a word: the survivors raise naming it, the run ends, no process is left."""
    start = time.monotonic()
    with pytest.raises(smpc.PartyError) as caught:
        run_parties(functools.partial(_die_on, 2), 3, transport="zmq", timeout=60.0)
    assert caught.value.rank == 2, str(caught.value)
    assert "ProcessDied" in str(caught.value)
    assert multiprocessing.active_children() == []
    print(f"dead party detected and run ended in {time.monotonic() - start:.1f} s")


@pytest.mark.processes
def test_inproc_and_zmq_agree() -> None:
    """Both transports run the same program to the same values and the same traffic counts."""
    over_zmq = run_parties(_arithmetic_no_endpoint, 3, transport="zmq")
    in_process = run_parties(_arithmetic_no_endpoint, 3, transport="inproc")
    for a, b in zip(over_zmq, in_process):
        assert torch.allclose(a["matmul"], b["matmul"], atol=1e-3)
        assert a["stats"] == b["stats"]


def _arithmetic_no_endpoint(session: smpc.Session) -> dict:
    x = session.share(X if session.rank == 0 else None, owner=0)
    y = session.share(Y if session.rank == 2 else None, owner=2)
    return {"matmul": (x @ y).reveal(), "stats": session.stats.as_dict()}


def test_run_local_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 2 parties"):
        smpc.run_local(_arithmetic, parties=1)
    with pytest.raises(ValueError, match="transport"):
        smpc.run_local(_arithmetic, parties=3, transport="carrier-pigeon")
    with pytest.raises(ValueError, match="int_bits"):
        smpc.run_local(_arithmetic, parties=3, int_bits=40)


def _nested_program() -> object:
    def inner(session: smpc.Session) -> int:
        return session.rank

    return inner


@pytest.mark.parametrize(("fn", "got"), [
    (lambda session: session.rank, "<lambda>"),
    (_nested_program(), "_nested_program.<locals>.inner"),
    (functools.partial(_fail_on, lambda: None), "_fail_on, which cannot be pickled: "),
])
def test_run_local_over_zmq_refuses_a_function_a_process_cannot_import(fn: object, got: str) -> None:
    """One line, before any process starts, instead of child tracebacks and a start-up timeout."""
    before = multiprocessing.active_children()
    with pytest.raises(ValueError) as caught:
        smpc.run_local(fn, parties=3, transport="zmq")
    message = str(caught.value)
    assert message.startswith(f"run_local(transport='zmq') needs a function defined at module level (got {got}")
    assert message.endswith("; define it at module level or use transport='inproc'") and "\n" not in message
    assert multiprocessing.active_children() == before


def test_a_function_of_an_interactive_session_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A function typed at the prompt (or in a notebook) lives in a __main__ that has no file to import."""
    def typed_at_the_prompt(session: smpc.Session) -> int:
        return session.rank

    typed_at_the_prompt.__module__, typed_at_the_prompt.__qualname__ = "__main__", "typed_at_the_prompt"
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    with pytest.raises(ValueError, match=r"\(got typed_at_the_prompt, defined in an interactive session, which a new "
                                         r"process cannot import\); define it at module level or use "
                                         r"transport='inproc'"):
        smpc.run_local(typed_at_the_prompt, parties=3, transport="zmq")


def test_a_module_level_function_and_a_partial_of_one_pass_the_check() -> None:
    check_spawnable(_arithmetic)
    check_spawnable(functools.partial(_fail_on, 1))


def _refuse_to_load() -> None:
    raise RuntimeError("this argument cannot be loaded in another process")


class _Unloadable:
    """Pickles fine here; loading it in the child raises."""

    def __reduce__(self) -> tuple:
        return (_refuse_to_load, ())


@pytest.mark.processes
def test_a_party_that_dies_while_starting_is_reported_at_once() -> None:
    """Not after the start-up timeout: the parent notices the child's exit while it waits for its address."""
    with pytest.raises(smpc.PartyError, match=r"party 0 failed: ProcessDied: exited with status 1 while starting"):
        smpc.run_local(functools.partial(_fail_on, _Unloadable()), parties=2, transport="zmq")


def _parent_and_sum(session: smpc.Session) -> tuple[int, float]:
    """This process's parent, and a shared sum opened (the session works)."""
    x = session.share(torch.tensor([float(session.rank)]) if session.rank == 0 else None, owner=0)
    return os.getppid(), float((x + 2.5).reveal())


@pytest.mark.processes
@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server here")
def test_parties_come_from_the_fork_server_or_are_spawned_as_asked() -> None:
    """By default (where the platform has one) the parties are forked by multiprocessing's fork server, not by
    this process; with start_method="spawn" this process starts them itself.  Both compute the same, and
    neither leaves a child process that multiprocessing tracks."""
    forked = smpc.run_local(_parent_and_sum, parties=3, protocol="replicated")
    spawned = smpc.run_local(_parent_and_sum, parties=3, protocol="replicated", start_method="spawn")
    assert [value for _, value in forked] == [value for _, value in spawned] == [2.5, 2.5, 2.5]
    assert all(parent != os.getpid() for parent, _ in forked), forked
    assert len({parent for parent, _ in forked}) == 1  # one server forked them all
    assert all(parent == os.getpid() for parent, _ in spawned), spawned
    assert multiprocessing.active_children() == []


def test_an_unknown_start_method_is_refused_before_anything_starts() -> None:
    """"fork" (unsafe with ZeroMQ's and torch's threads) and typos are refused at once."""
    for method in ("fork", "forkserve", ""):
        with pytest.raises(ValueError, match="start_method must be one of forkserver, spawn"):
            smpc.run_local(_parent_and_sum, parties=3, start_method=method)


def _all_bytes(value: object) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, dict):
        return [item for pair in value.items() for part in pair for item in _all_bytes(part)]
    if isinstance(value, (tuple, list)):
        return [item for part in value for item in _all_bytes(part)]
    return []


def test_each_process_is_handed_only_its_own_secret_key() -> None:
    """What _run_processes hands each party's and the dealer's process: its own CurveZMQ key pair and every
    node's public key; no other node's secret key is anywhere in its arguments."""
    from smpc import runner

    class Stop(Exception):
        pass

    handed: list[tuple] = []

    class Process:
        def __init__(self, target: object, args: tuple, name: str, daemon: bool) -> None:
            handed.append(args)
            self.pid = None

        def start(self) -> None:
            raise Stop

        def is_alive(self) -> bool:
            return False

    real = multiprocessing.get_context("spawn")
    context = types.SimpleNamespace(Queue=real.Queue, Pipe=real.Pipe, Process=Process)
    options = smpc.SessionOptions(n_parties=3, protocol="dealer")
    with pytest.raises(Stop):
        runner._run_processes(_parent_and_sum, options, None, context)
    assert len(handed) == 4  # three parties and the dealer
    own = [args[3][0] for args in handed]
    publics = [args[3][1] for args in handed]
    assert all(p == {node: pair[0] for node, pair in enumerate(own)} for p in publics)
    for node, args in enumerate(handed):
        present = set(_all_bytes(args))
        assert own[node][1] in present
        assert not any(pair[1] in present for other, pair in enumerate(own) if other != node), node
