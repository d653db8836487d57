"""Soak test: many fixed-point multiplications in one session, watching memory and open files for leaks.

    python -m benchmarks.soak [--muls 100000] [--size 1000] [--parties 3] [--warmup 1000] [--check-every 1000]
                              [--max-rss-growth-mib 64] [--max-fd-growth 4]

Runs the parties and the dealer as processes over ZeroMQ + CurveZMQ on 127.0.0.1 (``smpc.run_local``, one
torch thread each).  Every party shares two ``--size``-element vectors (x from -10 to 10, y from 0.5 to 1.5,
so ``x * y`` stays bounded) and computes ``x * y`` (Beaver triple plus dealer truncation) ``--muls`` times,
discarding each product.  After ``--warmup`` products, and then every ``--check-every``, each party records
its resident set size (VmRSS) and its number of open file descriptors, and opens that product to check it
against plain torch (within 1e-3).  The dealer is its own process: the parent samples its VmRSS and open
descriptors from /proc every quarter second, and compares them with the sample taken at the parties' end of
warm-up.

Prints muls done, elapsed, muls/s, and per node the RSS at the end of warm-up, its maximum after, the growth,
and the same for file descriptors.  Exits 1 when a growth exceeds ``--max-rss-growth-mib`` or
``--max-fd-growth`` (on any party or the dealer) or a check fails.  Linux only (/proc).
"""

from __future__ import annotations

import argparse
import functools
import os
import threading
import time
from typing import Any

import torch

import smpc

#: Largest accepted |revealed - plain| of a checked product.
TOLERANCE = 1e-3
#: How often the parent samples the dealer process (seconds).
DEALER_SAMPLE_INTERVAL = 0.25


# -- measurements (this process or another, by pid) ---------------------------------------------------------
def rss_kib(pid: int | str = "self") -> int:
    """Resident set size in KiB (VmRSS of /proc/<pid>/status)."""
    return _status_field(pid, "VmRSS:")


def peak_rss_kib(pid: int | str = "self") -> int:
    """Peak resident set size in KiB (VmHWM)."""
    return _status_field(pid, "VmHWM:")


def open_fds(pid: int | str = "self") -> int:
    """Number of open file descriptors (entries of /proc/<pid>/fd; for "self" this includes the one
    listdir itself holds, a constant)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _status_field(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


# -- the party program ---------------------------------------------------------------------------------------
def inputs(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two deterministic float64 vectors: x in [-10, 10], y in [0.5, 1.5]."""
    return (torch.linspace(-10.0, 10.0, size, dtype=torch.float64),
            torch.linspace(0.5, 1.5, size, dtype=torch.float64))


def program(session: smpc.Session, muls: int, size: int, warmup: int, check_every: int) -> dict[str, Any]:
    """One party's soak: ``muls`` products ``x * y``; samples (after warm-up) and checks every ``check_every``."""
    entered = time.time()
    torch.set_num_threads(1)
    x_plain, y_plain = inputs(size)
    expected = x_plain * y_plain
    x = session.share(x_plain if session.rank == 0 else None, owner=0)
    y = session.share(y_plain if session.rank == 1 % session.world_size else None, owner=1 % session.world_size)
    samples: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    warmup_end_wall = None

    def sample(done: int) -> None:
        samples.append({"muls": done, "wall": time.time(), "rss_kib": rss_kib(), "fds": open_fds()})

    def check(done: int, product: smpc.SharedTensor) -> None:
        error = float((product.reveal() - expected).abs().max())
        checks.append({"muls": done, "max_abs_error": error, "ok": error <= TOLERANCE})

    start = time.perf_counter()
    warmup_end = start
    if warmup == 0:
        sample(0)
        warmup_end_wall = time.time()
    for index in range(1, muls + 1):
        z = x * y
        if index == warmup:
            check(index, z)
            sample(index)
            warmup_end = time.perf_counter()
            warmup_end_wall = time.time()
        elif index > warmup and ((index - warmup) % check_every == 0 or index == muls):
            check(index, z)
            sample(index)
        del z
    end = time.perf_counter()
    return {
        "rank": session.rank,
        "pid": os.getpid(),
        "elapsed_s": end - start,
        "measured_s": end - warmup_end,
        "warmup_end_wall": warmup_end_wall,
        "entered_wall": entered,
        "left_wall": time.time(),
        "peak_rss_kib": peak_rss_kib(),
        "bytes_sent": session.stats.bytes_sent,
        "samples": samples,
        "checks": checks,
    }


# -- watching the dealer from the parent ---------------------------------------------------------------------
class ChildWatcher:
    """Samples VmRSS and open descriptors of every party and dealer process of this process's runs, by pid,
    until stopped: its children, and the children of multiprocessing's fork server (itself a child), which is
    where ``run_local`` starts them by default."""

    def __init__(self, interval: float = DEALER_SAMPLE_INTERVAL) -> None:
        self.interval = interval
        self.samples: dict[int, list[dict[str, Any]]] = {}
        self.cmdlines: dict[int, str] = {}
        self.forked: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-child-watcher")

    def __enter__(self) -> ChildWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            children = _children(me)
            servers = [pid for pid in children if _FORK_SERVER in self.cmdlines.get(pid, "")]
            forked = [pid for server in servers for pid in _children(server)]
            self.forked.update(forked)
            for pid in children + forked:
                try:
                    # Re-read every time: right after the fork, before its exec, a child still shows our command.
                    # An exited child not yet reaped (a zombie) shows an empty one: keep what we had.
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        command = f.read().replace(b"\0", b" ").decode(errors="replace")
                    if command:
                        self.cmdlines[pid] = command
                    entry = {"wall": time.time(), "rss_kib": rss_kib(pid), "fds": open_fds(pid)}
                except (OSError, RuntimeError):  # the child exited between listing and reading
                    continue
                self.samples.setdefault(pid, []).append(entry)
            self._stop.wait(self.interval)

    def spawned(self) -> list[int]:
        """The parties and the dealer: children started by multiprocessing's spawn, or forked by its fork server
        (not the server itself, nor the resource tracker)."""
        return [pid for pid, cmd in self.cmdlines.items() if "spawn_main" in cmd or pid in self.forked]


#: What the command line of multiprocessing's fork server (and of every process it forks) contains.
_FORK_SERVER = "multiprocessing.forkserver"


def _children(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces; the parent pid is field 4.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == parent:
            found.append(int(name))
    return found


# -- summaries -----------------------------------------------------------------------------------------------
def _growth(baseline: dict[str, Any], after: list[dict[str, Any]]) -> dict[str, Any]:
    rss_max = max([s["rss_kib"] for s in after], default=baseline["rss_kib"])
    fd_max = max([s["fds"] for s in after], default=baseline["fds"])
    return {
        "rss_warmup_mib": baseline["rss_kib"] / 1024,
        "rss_max_mib": rss_max / 1024,
        "rss_growth_mib": (rss_max - baseline["rss_kib"]) / 1024,
        "fd_warmup": baseline["fds"],
        "fd_max": fd_max,
        "fd_growth": fd_max - baseline["fds"],
        "samples_after_warmup": len(after),
    }


def _party_summary(result: dict[str, Any]) -> dict[str, Any]:
    baseline, *after = result["samples"]
    summary = {"rank": result["rank"], "pid": result["pid"], **_growth(baseline, after)}
    summary["peak_rss_mib"] = result["peak_rss_kib"] / 1024
    summary["checks"] = len(result["checks"])
    summary["checks_ok"] = all(c["ok"] for c in result["checks"])
    summary["max_abs_error"] = max((c["max_abs_error"] for c in result["checks"]), default=0.0)
    summary["bytes_sent"] = result["bytes_sent"]
    summary["samples"] = result["samples"]
    return summary


def _dealer_summary(watcher: ChildWatcher, party_pids: set[int], warmup_end: float) -> dict[str, Any] | None:
    """The dealer's growth from its first sample at or after the parties' end of warm-up; None when the
    dealer could not be told apart or the run was too short for a sample after warm-up."""
    candidates = [pid for pid in watcher.spawned() if pid not in party_pids]
    if len(candidates) != 1:
        return None
    pid = candidates[0]
    later = [s for s in watcher.samples.get(pid, []) if s["wall"] >= warmup_end]
    if not later:
        return None
    baseline, *after = later
    return {"pid": pid, **_growth(baseline, after), "samples": later}


def soak(muls: int = 100_000, size: int = 1000, parties: int = 3, warmup: int = 1000,
         check_every: int = 1000, *, timeout: float | None = None) -> dict[str, Any]:
    """Run the soak over ZeroMQ + CurveZMQ and return its figures: per party (``per_party``, rank order) and
    for the dealer (``dealer``, None if it could not be sampled after warm-up)."""
    if muls < 1 or size < 1 or check_every < 1 or not 0 <= warmup <= muls:
        raise ValueError("need muls >= 1, size >= 1, check_every >= 1 and 0 <= warmup <= muls")
    fn = functools.partial(program, muls=muls, size=size, warmup=warmup, check_every=check_every)
    start_wall = time.time()
    start = time.perf_counter()
    with ChildWatcher() as watcher:
        results = smpc.run_local(fn, parties=parties, transport="zmq", timeout=timeout)
    total = time.perf_counter() - start
    end_wall = time.time()
    per_party = [_party_summary(r) for r in results]
    elapsed = max(r["elapsed_s"] for r in results)
    measured = max(r["measured_s"] for r in results)
    warmup_end = max(r["warmup_end_wall"] for r in results)
    return {
        "muls": muls,
        "size": size,
        "parties": parties,
        "warmup": warmup,
        "check_every": check_every,
        "elapsed_s": elapsed,
        "muls_per_s": muls / elapsed if elapsed > 0 else float("inf"),
        "measured_s": measured,
        "measured_muls_per_s": (muls - warmup) / measured if measured > 0 else float("inf"),
        "total_s": total,
        "startup_s": max(r["entered_wall"] for r in results) - start_wall,
        "teardown_s": end_wall - min(r["left_wall"] for r in results),
        "per_party": per_party,
        "dealer": _dealer_summary(watcher, {r["pid"] for r in results}, warmup_end),
    }


def violations(report: dict[str, Any], max_rss_growth_mib: float, max_fd_growth: int) -> list[str]:
    """Why the run fails its bounds (empty: it passes)."""
    problems = []
    nodes = [(f"party {p['rank']}", p) for p in report["per_party"]]
    if report["dealer"] is not None:
        nodes.append(("dealer", report["dealer"]))
    for name, node in nodes:
        if node["rss_growth_mib"] > max_rss_growth_mib:
            problems.append(f"{name}: RSS grew {node['rss_growth_mib']:.1f} MiB > {max_rss_growth_mib} MiB")
        if node["fd_growth"] > max_fd_growth:
            problems.append(f"{name}: open descriptors grew by {node['fd_growth']} > {max_fd_growth}")
    for party in report["per_party"]:
        if not party["checks_ok"]:
            problems.append(f"party {party['rank']}: a revealed product was off by {party['max_abs_error']:.3g}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--muls", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--check-every", type=int, default=1000)
    parser.add_argument("--max-rss-growth-mib", type=float, default=64.0)
    parser.add_argument("--max-fd-growth", type=int, default=4)
    args = parser.parse_args(argv)
    report = soak(args.muls, args.size, args.parties, min(args.warmup, args.muls), args.check_every)
    print(f"soak: {report['muls']} muls of {report['size']} elements, {report['parties']} parties "
          f"(ZeroMQ + CurveZMQ, 127.0.0.1), warm-up {report['warmup']}, sampled every {report['check_every']}")
    print(f"elapsed {report['elapsed_s']:.1f} s ({report['muls_per_s']:.1f} muls/s; after warm-up "
          f"{report['measured_muls_per_s']:.1f} muls/s); run_local total {report['total_s']:.1f} s "
          f"(start-up {report['startup_s']:.1f} s, tear-down {report['teardown_s']:.1f} s)")
    header = f"{'node':<8} {'RSS warm-up':>12} {'RSS max':>9} {'growth':>8} {'fd warm-up':>10} {'fd max':>7} " \
             f"{'fd growth':>9} {'samples':>7} {'checks':>8} {'max err':>9}"
    print(header)
    print("-" * len(header))
    rows = [(f"party {p['rank']}", p) for p in report["per_party"]]
    rows.append(("dealer", report["dealer"]))
    for name, node in rows:
        if node is None:
            print(f"{name:<8} (no sample after warm-up: run too short, or dealer not found)")
            continue
        checks = f"{node['checks']} {'ok' if node['checks_ok'] else 'BAD'}" if "checks" in node else "-"
        error = f"{node['max_abs_error']:.2e}" if "max_abs_error" in node else "-"
        print(f"{name:<8} {node['rss_warmup_mib']:>8.1f} MiB {node['rss_max_mib']:>5.1f} MiB "
              f"{node['rss_growth_mib']:>+8.2f} {node['fd_warmup']:>10d} {node['fd_max']:>7d} {node['fd_growth']:>+9d} "
              f"{node['samples_after_warmup']:>7d} {checks:>8} {error:>9}")
    problems = violations(report, args.max_rss_growth_mib, args.max_fd_growth)
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print(f"OK: growth within {args.max_rss_growth_mib:g} MiB RSS and {args.max_fd_growth} descriptors on "
              "every node")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
