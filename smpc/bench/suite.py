"""The benchmark suite behind ``smpc bench`` and ``python -m benchmarks``.

    smpc bench [--quick] [--out DIR] [--parties 2 3] [--repeats N] [--profile] [--only OP ...] [--device cuda]

For 2 and 3 parties (and a dealer), each a process talking ZeroMQ + CurveZMQ on 127.0.0.1 with one torch
thread: elementwise fixed-point mul, matmuls (64, 256, 1024 square and 10,000 x 20 by 20 x 1), truncation,
comparison, ReLU, sigmoid, exp, reciprocal, one epoch of logistic regression (N = 10,000, D = 20, batch 128)
and one epoch of the German Credit job.  For each: median and interquartile range over repeated runs (party
0's clock, every run started after a barrier), elements per second, bytes sent per party (the largest over the
parties), rounds, the theoretical online cost of the openings the protocol made, the dealer's (offline)
bytes, the same computation in plain torch and the ratio, and the predicted time on a LAN and a WAN.
``--device cuda`` keeps every party's shares and local arithmetic on the GPU (the dealer, the PRG, the messages
and the plain-torch reference stay on the CPU).

Writes a table to the terminal and, under ``--out DIR``, ``bench.json`` and ``bench.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import protocols
import smpc
from network.framing import HEADER_SIZE
from protocols.replicated.arithmetic import NEXT_BLOCK
from smpc.bench import versus
from smpc.bench.common import barrier, print_table, settle_all, synchronize
from smpc.bench.netmodel import LINKS, calibrate_encryption, calibrate_round_trip, predict
from smpc.bench.training import plain_epoch, secure_epoch_runner
from smpc.loan.config import TrainConfig
from smpc.loan.job import train_party
from smpc.loan.plain import train_plain


@dataclass(frozen=True)
class Case:
    """One benchmark: an op name, a size, and how many elements it produces."""

    op: str
    size: tuple[int, ...]

    @property
    def label(self) -> str:
        if self.op == "matmul":
            m, k, p = self.size
            return f"{m}x{k} @ {k}x{p}"
        if self.op == "credit_epoch":
            return "German Credit"
        if self.op == "lr_epoch":
            return f"N={self.size[0]}"
        return f"{self.size[0]:.0e}".replace("e+0", "e")

    @property
    def elements(self) -> int:
        if self.op == "matmul":
            return self.size[0] * self.size[2]
        return self.size[0]


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("mul", (10**4,)), Case("matmul", (64, 64, 64)), Case("matmul", (256, 256, 256)),
                Case("matmul", (10_000, 20, 1)), Case("truncate", (10**4,)), Case("gt", (10**4,)),
                Case("relu", (10**4,)), Case("sigmoid", (10**4,)), Case("exp", (10**3,)),
                Case("reciprocal", (10**2,)), Case("lr_epoch", (1_280,)), Case("credit_epoch", (0,))]
    return [Case("mul", (10**5,)), Case("mul", (10**6,)), Case("matmul", (64, 64, 64)),
            Case("matmul", (256, 256, 256)), Case("matmul", (512, 512, 512)), Case("matmul", (1024, 1024, 1024)),
            Case("matmul", (10_000, 20, 1)), Case("truncate", (10**5,)), Case("gt", (10**5,)),
            Case("relu", (10**5,)), Case("sigmoid", (10**5,)), Case("exp", (10**5,)),
            Case("reciprocal", (10**4,)), Case("lr_epoch", (10_000,)), Case("credit_epoch", (0,))]


# -- inputs and the secure and plain computations -------------------------------------------------------
def _inputs(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Public benchmark operands, the same on every party (seeded; not shares)."""
    generator = torch.Generator().manual_seed(1)
    if case.op == "matmul":
        m, k, p = case.size
        return (torch.rand(m, k, generator=generator, dtype=torch.float64) * 2 - 1,
                torch.rand(k, p, generator=generator, dtype=torch.float64) * 2 - 1)
    low, high = {"exp": (-4.0, 4.0), "reciprocal": (0.5, 8.0)}.get(case.op, (-4.0, 4.0))
    x = torch.rand(case.size, generator=generator, dtype=torch.float64) * (high - low) + low
    y = torch.rand(case.size, generator=generator, dtype=torch.float64) * (high - low) + low
    return x, y


def _secure_op(case: Case, x: smpc.SharedTensor, y: smpc.SharedTensor) -> Callable[[], Any]:
    if case.op == "truncate":
        scaled = x * x.session.encoding.scale  # an integer product: exact, at double scale
        return scaled.rescale
    operations: dict[str, Callable[[], Any]] = {
        "mul": lambda: x * y, "matmul": lambda: x @ y, "gt": lambda: x > y, "relu": x.relu,
        "sigmoid": x.sigmoid, "exp": x.exp, "reciprocal": functools.partial(x.reciprocal, positive=True),
    }
    return operations[case.op]


def _plain_op(case: Case, x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    return {
        "mul": lambda: x * y, "matmul": lambda: x @ y, "truncate": lambda: torch.floor(x * 65536.0) / 65536.0,
        "gt": lambda: x > y, "relu": lambda: torch.relu(x), "sigmoid": lambda: torch.sigmoid(x),
        "exp": lambda: torch.exp(x), "reciprocal": lambda: torch.reciprocal(x),
    }[case.op]


def _time(fn: Callable[[], Any], repeats: int, before: Callable[[], None] | None = None) -> list[float]:
    seconds = []
    for run in range(repeats + 1):
        if before:
            before()
        start = time.perf_counter()
        fn()
        if run:
            seconds.append(time.perf_counter() - start)
    return seconds


def _epoch_runner(session: smpc.Session, case: Case) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(secure epoch, plain epoch) for the two training cases."""
    if case.op == "credit_epoch":
        config = TrainConfig(epochs=1, batch_size=32)
        return (functools.partial(train_party, session, config),
                functools.partial(train_plain, config, session.world_size))
    rows = case.size[0]
    return (secure_epoch_runner(session, rows, 20, 128),
            functools.partial(plain_epoch, rows, 20, 128, 1))


def party_program(session: smpc.Session, cases: list[Case], repeats: int, profile: bool) -> list[dict]:
    """Runs on every party: for each case, share the operands, time the secure op and (party 0) the plain one."""
    torch.set_num_threads(1)
    party = session.party
    rows = []
    for case in cases:
        training = case.op in ("lr_epoch", "credit_epoch")
        if training:
            secure, plain = _epoch_runner(session, case)
            runs = max(1, min(repeats, 3))
        else:
            x_plain, y_plain = _inputs(case)
            x = session.share(x_plain if session.rank == 0 else None, owner=0)
            y = session.share(y_plain if session.rank == 1 % session.world_size else None, owner=1 % session.world_size)
            secure, plain = _secure_op(case, x, y), _plain_op(case, x_plain, y_plain)
            runs = repeats
        # Run 0 is a warm-up that records the dealer requests; before each timed run the dealer makes that
        # run's material ahead of time (the offline phase, timed apart), so the timed run is the online phase.
        seconds, offline_seconds, offline_bytes = [], [], 0
        plan: list = []
        for run in range(runs + 1):
            if run:
                session.stats.reset()
                offline_seconds.append(session.preprocess(plan, 1))
                offline_bytes = session.stats.dealer_bytes_received
            barrier(session)
            trace, timing = protocols.OpeningTrace(), protocols.Profile()
            party.observers[:] = [trace, timing] if profile else [trace]
            with session.record() if not run else contextlib.nullcontext(plan) as plan:
                start = time.perf_counter()
                settle_all(secure())
                synchronize(session)
                elapsed = time.perf_counter() - start
            if run:
                seconds.append(elapsed)
        stats = session.stats
        transport = party.transport.stats
        row: dict[str, Any] = {
            "op": case.op, "size": list(case.size), "seconds": seconds,
            "bytes_sent": stats.bytes_sent, "bytes_received": stats.bytes_received, "messages": stats.messages,
            "rounds": stats.rounds, "dealer_bytes": offline_bytes, "online_dealer_bytes": stats.dealer_bytes_received,
            "offline_seconds": offline_seconds,
            "openings": [[label, nbytes] for label, nbytes in trace.openings],
            "wait_s": transport.wait_seconds, "codec_s": transport.codec_seconds,
            "profile": dict(timing.seconds) if profile else None,
        }
        party.observers.clear()
        if session.rank == 0:
            row["plain_seconds"] = _time(plain, max(3, runs))
        rows.append(row)
    rows.append(opening_overhead(session, repeats))
    return rows


def opening_overhead(session: smpc.Session, repeats: int) -> dict[str, Any]:
    """The per-round overhead: seconds per one-element opening through the public API (``reveal``), in runs of
    ``versus.OPENINGS_PER_RUN`` back to back, each run after a barrier; every run's figure, this party's clock."""
    one = session.share(torch.ones(1) if session.rank == 0 else None, owner=0)
    openings = functools.partial(versus.openings, one, versus.OPENINGS_PER_RUN)
    openings()  # warm-up
    seconds = []
    for _ in range(max(repeats, 3)):
        barrier(session)
        start = time.perf_counter()
        openings()
        seconds.append((time.perf_counter() - start) / versus.OPENINGS_PER_RUN)
    return {"op": "open1", "seconds": seconds}


# -- theory ---------------------------------------------------------------------------------------------
def opening_cost(nbytes: int, itemsize: int, n: int, gather_bytes: int | None) -> tuple[int, int]:
    """(largest payload bytes any party sends, rounds) of one opening of a share of ``nbytes`` bytes."""
    if n > 2 and gather_bytes is not None and nbytes >= gather_bytes:
        chunks = [len(c) * itemsize for c in np.array_split(np.arange(nbytes // itemsize), n)]
        return max(nbytes - chunk + (n - 1) * chunk for chunk in chunks), 2
    return (n - 1) * nbytes, 1


def theory(openings: list[list[Any]], n: int, gather_bytes: int | None) -> tuple[int, int, int]:
    """Payload bytes per party, header bytes per party and rounds that the openings made should cost."""
    payload = rounds = headers = 0
    for label, nbytes in openings:
        if label == "dealer request":  # to the dealer: offline traffic, counted apart
            continue
        if label == "share":  # the owner sends the shape to the n-1 others (party 0's trace has the largest)
            cost, r = (n - 1) * nbytes, 1
        elif label == "reveal to one":  # every party but the receiver sends its share
            cost, r = nbytes, 1
        else:
            cost, r = opening_cost(nbytes, 1 if label == "bit conversion" else 8, n, gather_bytes)
        payload, rounds, headers = payload + cost, rounds + r, headers + r * (n - 1) * HEADER_SIZE
    return payload, headers, rounds


def replicated_theory(per_party: list[dict]) -> tuple[int, int, int]:
    """The replicated family's (payload bytes, header bytes, rounds) for the party that sends the most: each
    party's openings from its own trace (``protocols.replicated``: the owner of an input sends its last
    component to both others; everything else, the helper sub-session's two-party openings included, goes to
    one peer), plus party 0's helper corrections and party 2's requests to it: one message each, or, in a call
    that repeats an earlier one, one plan that holds them all (``helper.RememberedPlans``).  Rounds: party 1
    takes part in every round, so its openings count them, but for the later blocks of a pipelined round
    (labelled with ``protocols.replicated.arithmetic.NEXT_BLOCK``: their bytes and headers count, not another
    round)."""
    costs = []
    for rank, party in enumerate(per_party):
        payload = messages = 0
        planned = False  # between a plan and its call's end, requests travel inside the plan
        for label, nbytes in party["openings"]:
            if label == "helper plan" or label == "helper end":
                planned = label == "helper plan"
            if label == "dealer request" and (rank != 2 or planned):  # recorded by both, sent by party 2
                continue
            copies = 2 if label == "share" else 1
            payload += copies * nbytes
            messages += copies if nbytes else 0
        costs.append((payload, messages))
    payload, messages = max(costs)
    rounds = sum(1 for label, _ in per_party[1]["openings"]
                 if label not in ("helper correction", "dealer request", "helper end", "helper plan")
                 and not label.endswith(NEXT_BLOCK))
    return payload, messages * HEADER_SIZE, rounds


# -- driver ---------------------------------------------------------------------------------------------
def summarise(case: Case, n: int, per_party: list[dict], encryption_bps: float, protocol: str = "dealer"
              ) -> dict[str, Any]:
    first = per_party[0]
    sent = max(r["bytes_sent"] for r in per_party)
    if protocol == "replicated":
        payload, headers, theory_rounds = replicated_theory(per_party)
    else:
        payload, headers, theory_rounds = theory(first["openings"], n, protocols.DEFAULT_GATHER_BYTES)
    median = statistics.median(first["seconds"])
    plain = statistics.median(first["plain_seconds"])
    quartiles = statistics.quantiles(first["seconds"], n=4) if len(first["seconds"]) >= 4 else None
    # Local compute: the slowest party's time not spent blocked on its peers.
    compute = max(statistics.median(r["seconds"]) - r["wait_s"] for r in per_party)
    row: dict[str, Any] = {
        "op": case.op, "size": case.label, "parties": n, "protocol": protocol, "median_s": median,
        "iqr_s": (quartiles[2] - quartiles[0]) if quartiles else max(first["seconds"]) - min(first["seconds"]),
        "runs": len(first["seconds"]), "elements_per_s": case.elements / median if case.elements else None,
        "bytes_per_party": sent, "theory_bytes": payload + headers, "theory_payload_bytes": payload,
        "bytes_vs_theory_pct": 100.0 * (sent - payload) / payload if payload else 0.0,
        "rounds": first["rounds"], "theory_rounds": theory_rounds, "openings": len(first["openings"]),
        "dealer_bytes": max(r["dealer_bytes"] for r in per_party),
        "offline_s": max(statistics.median(r["offline_seconds"]) for r in per_party),
        "plain_s": plain, "ratio": median / plain,
        "compute_s": max(compute, 0.0),
    }
    row["total_s"] = median + row["offline_s"]  # what a caller of the op waits for: the dealer's work included
    for name, link in LINKS.items():
        row[f"{name}_s"] = predict(row["compute_s"], row["rounds"], sent, link)
    if first["profile"] is not None:
        moved = first["bytes_sent"] + first["bytes_received"]
        encryption = moved / encryption_bps
        total = sum(first["seconds"]) / len(first["seconds"])
        prg = first["profile"].get("prg", 0.0)
        serialization = first["profile"].get("serialization", 0.0) + first["codec_s"]
        waiting = max(first["wait_s"] - encryption, 0.0)
        row["profile"] = {
            "prg_s": prg, "serialization_s": serialization, "encryption_s": encryption, "waiting_s": waiting,
            "local_compute_s": max(total - prg - serialization - first["wait_s"], 0.0),
        }
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    selected = [c for c in cases(args.quick) if not args.only or c.op in args.only]
    repeats = args.repeats or (3 if args.quick else 5)
    encryption_bps = calibrate_encryption()
    report: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
        "settings": {"quick": args.quick, "repeats": repeats, "threads_per_party": 1, "device": args.device,
                     "gather_bytes": protocols.DEFAULT_GATHER_BYTES, "transport": "ZeroMQ + CurveZMQ, 127.0.0.1",
                     "curve_throughput_MBps": encryption_bps / 1e6,
                     "curve_round_trip_us": calibrate_round_trip() * 1e6},
        "links": {name: {"rtt_s": link.rtt_s, "bits_per_s": link.bits_per_s} for name, link in LINKS.items()},
        "rows": [],
        "opening": [],
    }
    for protocol in args.protocol:
        for n in args.parties if protocol == "dealer" else [3]:
            program = functools.partial(party_program, cases=selected, repeats=repeats, profile=args.profile)
            results = smpc.run_local(program, parties=n, transport="zmq", protocol=protocol, device=args.device)
            for index, case in enumerate(selected):
                report["rows"].append(summarise(case, n, [r[index] for r in results], encryption_bps, protocol))
            slowest = [max(r[-1]["seconds"][i] for r in results) for i in range(len(results[0][-1]["seconds"]))]
            report["opening"].append({"parties": n, "protocol": protocol, "median_s": statistics.median(slowest),
                                      "runs": len(slowest), "openings_per_run": versus.OPENINGS_PER_RUN})
    return report


def print_report(report: dict[str, Any]) -> None:
    rows = [dict(r, total_ms=r["total_s"] * 1e3, median_ms=r["median_s"] * 1e3, offline_ms=r["offline_s"] * 1e3,
                 iqr_ms=r["iqr_s"] * 1e3, plain_ms=r["plain_s"] * 1e3, lan_ms=r["lan_s"] * 1e3,
                 wan_ms=r["wan_s"] * 1e3) for r in report["rows"]]
    settings = report["settings"]
    _say(f"ZeroMQ + CurveZMQ on 127.0.0.1, one torch thread per party, shares on {settings['device']} (plain "
          f"torch on the cpu), {settings['repeats']} runs per op; "
          f"bytes: largest over parties, frame headers included; theory: payload of the openings made; offline: the "
          f"dealer's ahead-of-time phase (time, bytes to the last party), not in the online median; TOTAL: online "
          f"median plus offline, the time a caller waits")
    print_table(rows, [
        ("parties", "n", "d"), ("protocol", "protocol", "s"), ("op", "op", "s"), ("size", "size", "s"),
        ("total_ms", "TOTAL ms", ".2f"), ("median_ms", "online median ms", ".2f"), ("offline_ms", "offline ms", ".1f"),
        ("iqr_ms", "IQR ms", ".2f"), ("elements_per_s", "elem/s", ".3g"), ("bytes_per_party", "bytes/party", "d"),
        ("theory_payload_bytes", "theory bytes", "d"), ("bytes_vs_theory_pct", "+%", ".2f"), ("rounds", "rounds", "d"),
        ("theory_rounds", "theory", "d"), ("dealer_bytes", "dealer bytes", "d"),
        ("plain_ms", "plain ms", ".3f"),
        ("ratio", "x plain", ".0f"), ("lan_ms", "LAN ms", ".1f"), ("wan_ms", "WAN ms", ".0f"),
    ], keep=4)
    print("(side by side with CrypTen, measured in the same invocation: smpc bench --versus crypten)")
    print()
    _say(f"per-round overhead: one-element opening (reveal) through the public API, "
          f"{versus.OPENINGS_PER_RUN} back to back per run, median of the slowest party's runs; the floor under "
          f"it, an 8-byte CurveZMQ ping-pong in one process: {report['settings']['curve_round_trip_us']:.0f} us")
    print_table([dict(r, median_us=r["median_s"] * 1e6) for r in report["opening"]],
                [("parties", "n", "d"), ("protocol", "protocol", "s"), ("median_us", "us per opening", ".0f")])
    profiled = [r for r in report["rows"] if r.get("profile")]
    if profiled:
        print()
        _say("profile (party 0, seconds per run): local compute, PRG, serialization, encryption (estimated from "
              "bytes moved and the measured CurveZMQ throughput), waiting for peers")
        print_table([dict(r, **r["profile"]) for r in profiled], [
            ("parties", "n", "d"), ("op", "op", "s"), ("size", "size", "s"), ("local_compute_s", "compute", ".4f"),
            ("prg_s", "PRG", ".4f"), ("serialization_s", "serialize", ".4f"), ("encryption_s", "encrypt", ".4f"),
            ("waiting_s", "waiting", ".4f")], keep=3)


def _say(text: str) -> None:
    """Print a note wrapped to fit the terminal beside the tables."""
    print(textwrap.fill(text, width=120, break_on_hyphens=False))


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    from smpc.bench.chart import write_chart

    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench.json"
    json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    png_path = out / "bench.png"
    write_chart(report, png_path)
    return [json_path, png_path]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: about a minute and a half on a busy 2-core machine (the run prints the "
                             "time it took at the end)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder for bench.json and bench.png (default: bench-results)")
    parser.add_argument("--parties", type=int, nargs="+", default=[2, 3], choices=range(2, 9), metavar="N",
                        help="party counts to run (default: 2 3)")
    parser.add_argument("--protocol", nargs="+", choices=("dealer", "replicated"), default=None,
                        help="protocol families to run (default: dealer; the replicated one runs 3 parties; with "
                             "--versus, the first one given, else the replicated family, the 3-party default)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per op (default 5, quick 3)")
    parser.add_argument("--profile", action="store_true",
                        help="split each op's time into local compute, PRG, serialization, encryption, waiting")
    parser.add_argument("--only", nargs="+", metavar="OP",
                        choices=sorted({c.op for c in cases(False)} | {c.op for c in versus.cases(False)}),
                        help="run only these ops")
    parser.add_argument("--versus", choices=("crypten",),
                        help="instead of the suite: smpc and CrypTen side by side in one invocation, the ratio per "
                             "op of total time (python -m benchmarks.versus; needs --crypten-python for CrypTen)")
    parser.add_argument("--crypten-python", metavar="PATH",
                        help="with --versus: python of a virtual environment with CrypTen 0.4.1")
    parser.add_argument("--spu-python", metavar="PATH",
                        help="with --versus: python of a virtual environment with SecretFlow SPU 0.9.5 (its ABY3 too)")
    parser.add_argument("--anchors", type=Path, default=None,
                        help="with --versus: the anchors' scripts (default: ../shared/anchors from the checkout)")
    parser.add_argument("--crypten-provider", choices=("TFP", "TTP"), default="TFP",
                        help="with --versus: CrypTen's triple source (TFP, its default; TTP, a separate dealer)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the parties' shares and local arithmetic live (default: cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_and_report(args)


def run_and_report(args: argparse.Namespace) -> int:
    if args.repeats < 0:
        raise SystemExit("--repeats must be >= 0")
    try:  # before any process starts: every party would fail the same way
        protocols.check_device(args.device)
    except ValueError as error:
        raise SystemExit(f"smpc bench: {error}") from None
    if args.versus:
        if args.device != "cpu":
            raise SystemExit("smpc bench: --versus compares CPU runs; --device cuda is for the suite and "
                             "python -m benchmarks.gpu_check")
        return versus.run_and_report(argparse.Namespace(
            crypten_python=args.crypten_python, spu_python=args.spu_python, anchors=args.anchors,
            crypten_provider=args.crypten_provider,
            protocol=args.protocol[0] if args.protocol else "auto", repeats=args.repeats or 5, quick=args.quick,
            only=args.only, timeout=versus.CRYPTEN_TIMEOUT_S, out=args.out))
    if args.only and not {c.op for c in cases(False)} & set(args.only):
        raise SystemExit(f"--only {' '.join(args.only)}: no such op in the suite (those are --versus ops)")
    args.protocol = args.protocol or ["dealer"]
    started = time.perf_counter()
    report = run(args)
    report["wall_s"] = time.perf_counter() - started
    print_report(report)
    for path in write_outputs(report, args.out):
        print(f"wrote {path}")
    print(f"suite took {report['wall_s']:.1f} s")
    return 0
