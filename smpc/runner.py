"""Start a whole session on this machine: ``run_local`` runs ``fn(session)`` once per party.

``transport="zmq"``: every party and the dealer is its own OS process, talking ZeroMQ with CurveZMQ over
127.0.0.1 on ports the OS picks.  On Linux the processes come from multiprocessing's fork server, which
imports this module (and with it torch) once per interpreter and forks each party from there: about 0.1 s to
start a session once it runs, against 3 to 4.5 s for freshly spawned interpreters that each import torch
(``start_method`` says more; elsewhere they are spawned).  ``transport="inproc"``: threads of this process
over an in-memory transport, for fast tests.  Either way the parties' return values come back in rank order,
the first failure is re-raised as ``PartyError`` naming its party, and no party process or port is left.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

import protocols
from network import (
    LocalNetwork,
    NetworkError,
    PeerClosedError,
    PeerLostError,
    Transport,
    ZmqTransport,
    abort_reason,
    generate_keypair,
)
from smpc.memory import keep_freed_memory
from smpc.options import SessionOptions
from smpc.session import Session

#: The multiprocessing start methods ``run_local`` accepts (``fork`` is not one: it would copy this process's
#: threads' state, ZeroMQ's and torch's included, into every party).
START_METHODS = ("forkserver", "spawn")
#: How long the other parties get to report after the first failure before they are killed.
_FAILURE_GRACE_SECONDS = 12.0


class PartyError(RuntimeError):
    """A party (or the dealer) of a local run failed; ``rank`` says which, the message says why."""

    def __init__(self, rank: int, kind: str, message: str, remote_traceback: str = "") -> None:
        who = "the dealer" if rank < 0 else f"party {rank}"
        super().__init__(f"{who} failed: {kind}: {message}")
        self.rank = rank
        self.kind = kind
        self.remote_traceback = remote_traceback


def run_dealer(transport: Transport, n_parties: int) -> int:
    """The dealer's whole life on a connected transport: hand out keys, serve requests, say goodbye."""
    try:
        prgs = protocols.dealer_keys(transport, n_parties)
        served = protocols.serve(transport, prgs)
    except BaseException as error:
        transport.close(abort=True, reason=abort_reason(error))
        raise
    transport.close()
    return served


def run_local(
    fn: Callable[[Session], Any],
    parties: int = 3,
    transport: str = "zmq",
    *,
    frac_bits: int = 16,
    int_bits: int = 15,
    truncation: str = "dealer",
    failure_budget: float = protocols.DEFAULT_FAILURE_BUDGET,
    recv_timeout: float = 120.0,
    timeout: float | None = None,
    gather_bytes: int | None = protocols.DEFAULT_GATHER_BYTES,
    device: str = "cpu",
    protocol: str = "dealer",
    check_range: bool = False,
    start_method: str | None = None,
) -> list[Any]:
    """Run ``fn(session)`` once per party (plus a dealer in the dealer family) and return the results in rank
    order.  ``protocol``: "dealer" (default, any n >= 2) or "replicated" (three parties, no dealer).

    ``transport="zmq"`` needs ``fn`` to be importable by name (a module-level function), since every party is
    a fresh process.  ``timeout`` bounds the whole run (default: none beyond each receive's deadline).
    ``check_range``: products and reveals leaving |x| < 2^int_bits raise ``smpc.RangeError`` on every party
    (``smpc.range_check``), caught in ``fn`` or re-raised here as a ``PartyError`` of kind RangeError.

    ``start_method`` (``transport="zmq"``): "forkserver" (the default on Linux) or "spawn" (the default
    elsewhere: macOS's system libraries are not safe to use after a fork, which is why Python spawns there).
    The fork server is multiprocessing's: one process, started by the first run and left for this
    interpreter's lifetime (it leaves once this process and every party it forked have exited), that imports
    smpc and torch once and forks every party and dealer from there, so a run starts in about 0.1 s instead of
    each process importing torch anew (seconds).  Its children start from the state the server had when it
    started, not from this process's: environment variables set since, and where stdout and stderr pointed
    then (a party's output goes there, not to a redirection made later).  If this program started
    multiprocessing's fork server itself before its first run, the parties come from that one and import
    smpc each (about 1.6 s a run here), and a preload list it set for a server not yet started is replaced by
    ours.  "spawn" starts each process from scratch, from this process's state, and leaves nothing behind.
    """
    if start_method is not None and start_method not in START_METHODS:
        raise ValueError(f"start_method must be one of {', '.join(START_METHODS)} or None, got {start_method!r}")
    if parties < 2:
        raise ValueError(f"a session needs at least 2 parties, got {parties}")
    options = SessionOptions(
        n_parties=parties,
        frac_bits=frac_bits,
        int_bits=int_bits,
        truncation=truncation,
        failure_budget=failure_budget,
        recv_timeout=recv_timeout,
        gather_bytes=gather_bytes,
        device=device,
        protocol=protocol,
        check_range=check_range,
    )
    if transport == "inproc":
        return _run_threads(fn, options, timeout)
    if transport == "zmq":
        check_spawnable(fn)
        return _run_processes(fn, options, timeout, _process_context(start_method))
    raise ValueError(f"transport must be 'zmq' or 'inproc', got {transport!r}")


# -- threads -----------------------------------------------------------------------------------------------
def _run_threads(fn: Callable[[Session], Any], options: SessionOptions, timeout: float | None) -> list[Any]:
    n = options.n_parties
    network = LocalNetwork(options.n_nodes, names=options.names(), recv_timeout=options.recv_timeout)
    results: list[Any] = [None] * n
    failures: list[tuple[float, int, BaseException]] = []
    lock = threading.Lock()

    def party_main(rank: int) -> None:
        try:
            with Session.from_options(network.transport(rank), rank, options) as session:
                results[rank] = fn(session)
        except BaseException as error:  # noqa: BLE001 - reported to the caller below
            network.abort(rank, f"{type(error).__name__}")
            with lock:
                failures.append((time.monotonic(), rank, error))

    def dealer_main() -> None:
        try:
            run_dealer(network.transport(n), n)
        except BaseException as error:  # noqa: BLE001
            network.abort(n, f"{type(error).__name__}")
            with lock:
                failures.append((time.monotonic(), -1, error))

    threads = [threading.Thread(target=party_main, args=(r,), daemon=True, name=f"smpc-party-{r}") for r in range(n)]
    if options.has_dealer:
        threads.append(threading.Thread(target=dealer_main, daemon=True, name="smpc-dealer"))
    for thread in threads:
        thread.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        for rank in range(options.n_nodes):
            network.abort(rank, "run_local timed out")
        raise TimeoutError(f"run_local did not finish within {timeout} s")
    if failures:
        _, rank, error = _root_cause([(t, r, e, type(e).__name__) for t, r, e in failures])
        raise PartyError(rank, type(error).__name__, str(error)) from error
    return results


def _root_cause(failures: list[tuple[float, int, Any, str]]) -> tuple[float, int, Any]:
    """The failure that started it: the earliest that is not merely a peer noticing another's loss."""
    consequences = {PeerLostError.__name__, PeerClosedError.__name__}
    ordered = sorted(failures, key=lambda f: f[0])
    for when, rank, error, kind in ordered:
        if kind not in consequences:
            return when, rank, error
    when, rank, error, _ = ordered[0]
    return when, rank, error


# -- processes ---------------------------------------------------------------------------------------------
def check_spawnable(fn: Callable[..., Any]) -> None:
    """ValueError, in one line, unless a spawned process can find ``fn`` by name: a function defined at module
    level of an importable module (or a ``functools.partial`` of one with picklable arguments).  Checked before
    any process starts: otherwise every child fails to unpickle it and the run dies of a start-up timeout."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__qualname__", None) or type(target).__name__
    module = getattr(target, "__module__", None)
    problem = ""
    if "<lambda>" in name or "<locals>" in name:
        problem = name
    elif module == "__main__" and not hasattr(sys.modules.get("__main__"), "__file__"):
        problem = f"{name}, defined in an interactive session, which a new process cannot import"
    else:
        try:
            pickle.dumps(fn)
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            problem = f"{name}, which cannot be pickled: {error}"
    if problem:
        raise ValueError(f"run_local(transport='zmq') needs a function defined at module level (got {problem}); "
                         "define it at module level or use transport='inproc'")


def _child_main(
    rank: int,
    options: SessionOptions,
    fn: Callable[[Session], Any] | None,
    keys: tuple[tuple[bytes, bytes], dict[int, bytes]],
    session_id: bytes,
    conn: Any,
    results: Any,
) -> None:
    """Entry point of one party's process (``fn`` set) or of the dealer's (``fn`` None, rank n).  ``keys``: this
    node's own CurveZMQ key pair and every node's public key, never another node's secret key."""
    n = options.n_parties
    transport = None
    _ignore_interrupts()
    keep_freed_memory()  # this process is ours: reuse freed pages rather than fault in fresh ones
    try:
        (public, secret), roster_keys = keys
        transport = ZmqTransport(
            rank,
            public_key=public,
            secret_key=secret,
            roster_keys=roster_keys,
            session_id=session_id,
            handshake=options.handshake(),
            bind="tcp://127.0.0.1:0",
            names=options.names(),
            recv_timeout=options.recv_timeout,
            connect_timeout=options.connect_timeout,
        )
        conn.send(transport.endpoint)
        addresses: dict[int, str] = conn.recv()
        transport.connect({node: addr for node, addr in addresses.items() if node != rank})
        if fn is None:
            outcome: Any = run_dealer(transport, n)
        else:
            with Session.from_options(transport, rank, options) as session:
                outcome = fn(session)
        results.put((rank, "ok", _portable(outcome), "", ""))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, then exit non-zero
        if transport is not None:
            try:
                transport.close(abort=True, reason=abort_reason(error))
            except NetworkError:
                pass
        results.put((rank, "error", None, type(error).__name__, f"{error}\n{traceback.format_exc()}"))
        raise SystemExit(1) from None


def _ignore_interrupts() -> None:
    """In a child: ignore SIGINT (dropping one that arrived while it started), then unblock it; the parent
    stops us when the user interrupts the run (see ``_start_ignoring_interrupts``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _process_context(start_method: str | None) -> Any:
    """The multiprocessing context the parties start from (``run_local``'s ``start_method``)."""
    if start_method is None:
        start_method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # The server imports this module, and so smpc and torch, before it forks anything.  Not "__main__"
        # (multiprocessing's default): where Python honours it (3.13.8 and later) the server would run the
        # caller's script at top level with the server's own argv, and any CUDA call there would make every
        # forked party unable to use CUDA; each party imports the script itself, as under spawn.  It takes
        # effect when the server starts, the first run of this interpreter; afterwards it changes nothing.
        context.set_forkserver_preload([__name__])
    return context


def _run_processes(fn: Callable[[Session], Any], options: SessionOptions, timeout: float | None,
                   context: Any) -> list[Any]:
    n = options.n_parties
    keys = {node: generate_keypair() for node in range(options.n_nodes)}
    public_keys = {node: pair[0] for node, pair in keys.items()}
    session_id = os.urandom(16)
    results = context.Queue()
    pipes = [context.Pipe() for _ in range(options.n_nodes)]
    processes = [
        context.Process(
            target=_child_main,
            args=(node, options, fn if node < n else None, (keys[node], public_keys), session_id, pipes[node][1],
                  results),
            name="smpc-dealer" if node == n else f"smpc-party-{node}",
            daemon=True,
        )
        for node in range(options.n_nodes)
    ]
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        _start_ignoring_interrupts(processes)
        addresses = {node: _await_endpoint(node if node < n else -1, pipes[node][0], processes[node],
                                           options.connect_timeout)
                     for node in range(options.n_nodes)}
        for parent_end, _ in pipes:
            parent_end.send(addresses)
        return _collect(results, processes, n, options.n_nodes, deadline)
    except (KeyboardInterrupt, PartyError):
        # Interrupted: they ignore SIGINT, so stopping them is ours to do.  Failed: the others had their grace
        # period in _collect, or wait for addresses that will never come.  Either way, at once.
        _stop(processes)
        raise
    finally:
        _reap(processes)
        results.close()
        results.join_thread()
        for parent_end, child_end in pipes:
            parent_end.close()
            child_end.close()


def _await_endpoint(rank: int, parent_end: Any, process: Any, timeout: float) -> str:
    """The address a child bound, once it reports it; PartyError as soon as the child dies first, or after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not parent_end.poll(min(0.5, max(0.0, deadline - time.monotonic()))):
        if process.exitcode is not None:
            raise PartyError(rank, "ProcessDied", f"exited with status {process.exitcode} while starting")
        if time.monotonic() >= deadline:
            raise PartyError(rank, "TimeoutError", f"did not start within {timeout:g} s")
    return str(parent_end.recv())


def _start_ignoring_interrupts(processes: list[Any]) -> None:
    """Start the children with SIGINT blocked (a child inherits its parent thread's signal mask across fork and
    exec; a fork server started here, by the first run, keeps it blocked, ignores SIGINT and passes the mask on
    to the children it forks), so that a Ctrl-C in the terminal, which reaches the whole process group,
    interrupts only this process: it stops them (``_stop``), and no child prints a traceback, not even one
    still importing its modules.  A Ctrl-C that reaches us meanwhile waits and is raised here once they are
    all started.  Blocking it in this thread is not enough on its own: another thread of ours (torch starts
    one) may take the signal, and Python would still raise KeyboardInterrupt here, in the middle of a start,
    leaving a child that we never recorded, so never stopped (it then failed on the queue's semaphore, gone
    with us, and printed that).  So, in the main thread, a handler that only notes it stands in meanwhile."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: the children start as they are
        for process in processes:
            process.start()
        return
    noted: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum)) if in_main else None
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for process in processes:
            process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a pending SIGINT arrives now, and is noted
        if in_main:  # (None: a handler not set from Python, which we cannot put back; the default then)
            signal.signal(signal.SIGINT, handler if handler is not None else signal.SIG_DFL)
    if noted:
        signal.raise_signal(signal.SIGINT)  # as if it came now: KeyboardInterrupt, or whatever SIGINT does here


def _collect(results: Any, processes: list[Any], n: int, nodes: int, deadline: float | None) -> list[Any]:
    """Gather every node's report; after the first failure give the others a grace period, then stop."""
    values: dict[int, Any] = {}
    reported: set[int] = set()
    failures: list[tuple[float, int, Any, str]] = []
    grace_end: float | None = None
    dead_since: dict[int, float] = {}
    while len(reported) < nodes:
        now = time.monotonic()
        limit = min(x for x in (deadline, grace_end, now + 3600.0) if x is not None)
        if now >= limit:
            break
        try:
            rank, status, value, kind, text = results.get(timeout=min(0.5, limit - now))
        except queue.Empty:
            for node, process in enumerate(processes):
                if process.exitcode is not None and node not in reported:
                    dead_since.setdefault(node, time.monotonic())
            # A report can trail its process's exit by a moment; only a node silent for a second died hard.
            silent = [node for node, since in dead_since.items()
                      if node not in reported and time.monotonic() - since > 1.0]
            if silent:
                for node in silent:
                    reported.add(node)
                    failures.append((time.monotonic(), node if node < n else -1,
                                     f"exited with status {processes[node].exitcode} without a result", "ProcessDied"))
                if grace_end is None:
                    grace_end = time.monotonic() + _FAILURE_GRACE_SECONDS
            continue
        if rank in reported:
            continue
        reported.add(rank)
        if status == "ok":
            if rank < n:
                values[rank] = _restore(value)
            continue
        failures.append((time.monotonic(), rank if rank < n else -1, text, kind))
        if grace_end is None:
            grace_end = time.monotonic() + _FAILURE_GRACE_SECONDS
    if failures:
        _, rank, text = _root_cause(failures)
        kind = next(k for _, r, t, k in failures if r == rank and t == text)
        message, _, remote = text.partition("\n")
        raise PartyError(rank, kind, message, remote)
    if len(values) < n:
        missing = [r for r in range(n) if r not in values]
        raise PartyError(missing[0], "TimeoutError", f"no result from parties {missing} before the deadline")
    return [values[r] for r in range(n)]


class _TensorCopy:
    """A tensor travelling from a party process to the parent as a plain numpy array.

    torch's multiprocessing hands tensors over as shared-memory file descriptors, which vanish when the party
    process exits; a copy of the data does not.
    """

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array


def _portable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _TensorCopy(value.detach().cpu().numpy().copy())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _portable(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {key: _portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_portable(item) for item in value)
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, _TensorCopy):
        return torch.from_numpy(value.array)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _restore(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {key: _restore(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_restore(item) for item in value)
    return value


def _stop(processes: list[Any]) -> None:
    """Terminate every child still running, now (the run was interrupted); ``_reap`` then collects them."""
    for process in processes:
        if process.pid is not None and process.is_alive():
            process.terminate()


def _reap(processes: list[Any]) -> None:
    """Wait briefly for every child, then terminate and kill what is left; nothing survives the run."""
    end = time.monotonic() + 5.0
    for process in processes:
        if process.pid is not None:
            process.join(max(0.0, end - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join(2.0)
