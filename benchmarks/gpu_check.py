"""GPU check: is the CUDA path exact and correct, and how much faster is it than the CPU, in one short run.

    python -m benchmarks.gpu_check [--device cuda] [--quick] [--repeats N] [--out gpu-check.json]

1. Ring matmul: ``fixedpoint.ring_matmul`` on the device by the float64-limb method (what "auto" picks on
   CUDA) against the CPU's int64 matmul, for full-range random int64 matrices with rows and columns of
   extreme values (every limb at its largest magnitude), inner dimensions 1, 2, 17, 512, 2048, 4096 and 8192
   (a shared 4096 matmul multiplies [E, A'] @ [B; D]) and both sides of each limb-width step: exact equality,
   pass or fail per size.
2. Ops: every op ``smpc bench`` times (mul, matmul, truncation, comparison, ReLU, sigmoid, exp, reciprocal)
   and one small logistic-regression epoch, 3 parties as threads with shares on the device, in both protocol
   families; each result revealed and held against plain torch within the op's documented error.
3. Timing: mul 10^7, a 4096^3 matmul and one logistic-regression epoch (N = 10,000, D = 20, batch 128), 3 parties
   and a dealer as processes over ZeroMQ + CurveZMQ, one torch thread each, with shares on the device and then
   on the CPU: the TOTAL a caller waits (the median online seconds after one warm-up, with the dealer's
   material made ahead of each timed run as ``smpc bench`` does, plus that offline time), the CPU / device
   ratio of totals, and the online and offline seconds beside.
   Op by op, each side in its own processes, the JSON saved after each: a run cut short keeps what it measured.
   1 timed run per op by default: on the CPU each party's int64 product of 4096 x 8192 by 8192 x 4096 and the
   dealer's 4096^3 take over a minute a run on an H200 host's cores.  Measured there on 2026-12-04, step 3
   took 261 s and steps 1 and 2 well under a minute: the whole check stays near 5 minutes (``wall_s`` in the
   JSON says); ``--steps timing`` runs step 3 alone, ``--repeats N`` times each op N times.

Prints a line per matmul size and per op check, then the timing table; writes JSON to ``--out`` after each step
(so an interrupted run keeps what it measured).  Exit status 1 on any mismatch or failed check.
``--device cpu --quick`` runs the same steps on the CPU with small sizes (mul 10^4, matmul 64, epoch N = 1,280):
the test mode.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import protocols
import smpc
from fixedpoint import ring_matmul
from fixedpoint.ring import limb_width
from protocols.family import FAMILIES
from smpc.bench.common import barrier, print_table, settle_all, synchronize
from smpc.bench.training import logistic_model, secure_logistic, synthetic, train_plain_epoch

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
#: Inner dimensions of step 1: those of the issue, what a shared 4096 matmul meets, and each limb-width step.
INNER_DIMENSIONS = (1, 2, 17, 512, 513, 2048, 2049, 4096, 8192, 8193)
#: Step 2: elements per op, and the logistic-regression epoch (rows, features, batch).
CHECK_ELEMENTS = 64
CHECK_EPOCH = (256, 4, 64)
#: Step 3: batch and features of the timed epoch (the bench's).
EPOCH_FEATURES, EPOCH_BATCH = 20, 128


@dataclass(frozen=True)
class Sizes:
    """Step 3's sizes (and step 1's outer dimensions)."""

    mul: int
    matmul: int
    epoch_rows: int
    outer: int


FULL = Sizes(mul=10**7, matmul=4096, epoch_rows=10_000, outer=256)
QUICK = Sizes(mul=10**4, matmul=64, epoch_rows=1_280, outer=16)


# -- step 1: the ring matmul --------------------------------------------------------------------------------
def extreme_limbs(width: int) -> int:
    """The int64 whose signed limbs of ``width`` bits are all -2^(width-1) below the top one."""
    value = sum(-(1 << (width - 1)) << (width * i) for i in range(-(-64 // width))) % (1 << 64)
    return value - (1 << 64) if value > INT64_MAX else value


def ring_operands(outer: int, inner: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(outer + 5) x inner and inner x (outer + 5) int64 matrices: full-range random, then one row (column) per
    extreme value, so that the float64 sums of the limb method reach their bound k 2^(2w-2) <= 2^53."""
    generator = torch.Generator().manual_seed(inner)  # public test data, not shares
    width = limb_width(inner)
    extremes = torch.tensor([INT64_MIN, INT64_MAX, -1, extreme_limbs(width), extreme_limbs(width - 1)])
    a = torch.cat([torch.randint(INT64_MIN, INT64_MAX, (outer, inner), generator=generator, dtype=torch.int64),
                   extremes.reshape(-1, 1).expand(-1, inner)])
    b = torch.cat([torch.randint(INT64_MIN, INT64_MAX, (inner, outer), generator=generator, dtype=torch.int64),
                   extremes.reshape(1, -1).expand(inner, -1)], dim=1)
    return a, b


def check_ring_matmul(device: torch.device, outer: int) -> list[dict[str, Any]]:
    """Step 1: one row per inner dimension, ``equal`` True when the device's limb product is the CPU's."""
    rows = []
    for inner in INNER_DIMENSIONS:
        a, b = ring_operands(outer, inner)
        expected = ring_matmul(a, b, method="int64")
        got = ring_matmul(a.to(device), b.to(device), method="limbs").cpu()
        equal = bool(torch.equal(got, expected))
        rows.append({"inner": inner, "shape": [a.shape[0], inner, b.shape[1]], "limb_bits": limb_width(inner),
                     "equal": equal})
        print(f"ring matmul {a.shape[0]} x {inner} @ {inner} x {b.shape[1]} ({limb_width(inner)}-bit limbs) on "
              f"{device} against int64 on the cpu: {'pass' if equal else 'FAIL'}", flush=True)
    return rows


# -- step 2: the ops on the device --------------------------------------------------------------------------
@dataclass(frozen=True)
class OpCheck:
    """An op of ``smpc bench``: its input range, the secure and the plain computation, and the error allowed,
    |secure - plain| <= atol + rtol |plain|: the op's documented bound or looser (this checks the device path,
    not the approximations, which their own tests hold to their bounds)."""

    low: float
    high: float
    secure: Callable[[smpc.SharedTensor, smpc.SharedTensor], smpc.SharedTensor]
    plain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    atol: float
    rtol: float = 0.0


def _square(values: Any) -> Any:
    return values.reshape(8, -1)


OP_CHECKS: dict[str, OpCheck] = {
    "mul": OpCheck(-4.0, 4.0, lambda x, y: x * y, lambda x, y: x * y, 1e-3),
    "matmul": OpCheck(-1.0, 1.0, lambda x, y: _square(x) @ _square(y).T, lambda x, y: _square(x) @ _square(y).T,
                      1e-3),
    "truncate": OpCheck(-4.0, 4.0, lambda x, y: (x * x.session.encoding.scale).rescale(), lambda x, y: x, 1e-4),
    "gt": OpCheck(-4.0, 4.0, lambda x, y: x > y, lambda x, y: (x > y).double(), 0.0),
    "relu": OpCheck(-4.0, 4.0, lambda x, y: x.relu(), lambda x, y: torch.relu(x), 0.0),
    "sigmoid": OpCheck(-10.0, 10.0, lambda x, y: x.sigmoid(), lambda x, y: torch.sigmoid(x), 1e-3),
    "exp": OpCheck(-4.0, 4.0, lambda x, y: x.exp(), lambda x, y: torch.exp(x), 1e-4, 1e-3),
    "reciprocal": OpCheck(0.5, 8.0, lambda x, y: x.reciprocal(positive=True), lambda x, y: 1.0 / x, 1e-4, 1e-3),
}
#: Revealed logistic-regression weights after one epoch against plain torch's (sigmoid's error, a few steps).
EPOCH_ATOL = 5e-3


def check_inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Public inputs of an op check, multiples of 2^-16 (so comparisons and ReLU are exact)."""
    check = OP_CHECKS[name]
    generator = torch.Generator().manual_seed(list(OP_CHECKS).index(name))  # public test data, not shares
    x, y = (torch.rand(CHECK_ELEMENTS, generator=generator, dtype=torch.float64) * (check.high - check.low)
            + check.low for _ in range(2))
    return torch.round(x * 65536) / 65536, torch.round(y * 65536) / 65536


def check_program(session: smpc.Session) -> dict[str, torch.Tensor]:
    """Runs on every party: each op on shared inputs, revealed; then the weights after one small epoch."""
    results = {}
    for name, check in OP_CHECKS.items():
        x_plain, y_plain = check_inputs(name)
        x = session.share(x_plain if session.rank == 0 else None, owner=0)
        y = session.share(y_plain if session.rank == 1 else None, owner=1)
        results[name] = check.secure(x, y).reveal().cpu()
    epoch, model = secure_logistic(session, *CHECK_EPOCH)
    epoch()
    revealed = model.reveal(dtype=torch.float64)
    assert revealed is not None
    results["lr_epoch"] = torch.cat([p.detach().reshape(-1) for p in revealed.parameters()])
    return results


def plain_results() -> dict[str, torch.Tensor]:
    """What ``check_program`` computes, in plain float64 torch."""
    results = {name: check.plain(*check_inputs(name)) for name, check in OP_CHECKS.items()}
    rows, features, batch = CHECK_EPOCH
    x, y = synthetic(rows, features)
    model = logistic_model(features)
    train_plain_epoch(model, torch.from_numpy(x), torch.from_numpy(y), batch)
    results["lr_epoch"] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return results


def check_ops(device: torch.device) -> list[dict[str, Any]]:
    """Step 2: one row per family and op, ``ok`` when the error is within the allowed one (a family whose run
    failed gets one row with the failure)."""
    expected = plain_results()
    rows: list[dict[str, Any]] = []
    for protocol in FAMILIES:
        try:
            secure = smpc.run_local(check_program, parties=3, transport="inproc", device=str(device),
                                    protocol=protocol, timeout=300.0)[0]
        except (smpc.PartyError, TimeoutError) as failure:
            rows.append({"protocol": protocol, "op": "all", "error": str(failure), "ok": False})
            print(f"{protocol:<10} on {device}: FAIL: {failure}", flush=True)
            continue
        for name, want in expected.items():
            atol, rtol = (EPOCH_ATOL, 0.0) if name == "lr_epoch" else (OP_CHECKS[name].atol, OP_CHECKS[name].rtol)
            error = (secure[name] - want).abs()
            excess = float((error - atol - rtol * want.abs()).max())
            rows.append({"protocol": protocol, "op": name, "max_abs_error": float(error.max()), "atol": atol,
                         "rtol": rtol, "ok": excess <= 0.0})
            print(f"{protocol:<10} {name:<10} on {device}: max error {float(error.max()):.2e} (allowed {atol:.0e} "
                  f"+ {rtol:.0e} |value|): {'pass' if excess <= 0.0 else 'FAIL'}", flush=True)
    return rows


# -- step 3: timing ------------------------------------------------------------------------------------------
TIMED_OPS = ("mul", "lr_epoch", "matmul")
STEPS = ("ring", "ops", "timing")


def timed_op(session: smpc.Session, sizes: Sizes, op: str) -> tuple[str, Callable[[], Any]]:
    """(size label, secure computation) of one op of step 3, its inputs shared (seeded public data, not shares)."""
    generator = torch.Generator().manual_seed(1)
    if op == "lr_epoch":
        epoch, _ = secure_logistic(session, sizes.epoch_rows, EPOCH_FEATURES, EPOCH_BATCH)
        return f"N={sizes.epoch_rows}", epoch
    if op == "mul":
        x_plain, y_plain = (torch.rand(sizes.mul, generator=generator, dtype=torch.float64) * 8 - 4
                            for _ in range(2))
        label = f"{sizes.mul:.0e}".replace("e+0", "e")
    else:
        n = sizes.matmul
        x_plain, y_plain = (torch.rand(n, n, generator=generator, dtype=torch.float64) * 2 - 1 for _ in range(2))
        label = f"{n}x{n} @ {n}x{n}"
    x = session.share(x_plain if session.rank == 0 else None, owner=0)
    y = session.share(y_plain if session.rank == 1 else None, owner=1)
    return label, (lambda: x * y) if op == "mul" else (lambda: x @ y)


def timing_program(session: smpc.Session, sizes: Sizes, repeats: int, op: str) -> dict[str, Any]:
    """Runs on every party: one warm-up of ``op`` that records the dealer requests, then timed runs of the
    online phase, each after the dealer made its material (offline, timed apart) and a barrier."""
    torch.set_num_threads(1)
    label, secure = timed_op(session, sizes, op)
    online, offline = [], []
    plan: list = []
    for run in range(repeats + 1):
        if run:
            offline.append(session.preprocess(plan, 1))
        barrier(session)
        with session.record() if not run else contextlib.nullcontext(plan) as plan:
            start = time.perf_counter()
            settle_all(secure())
            synchronize(session)
            elapsed = time.perf_counter() - start
        if run:
            online.append(elapsed)
    return {"op": op, "size": label, "online_s": online, "offline_s": offline}


def time_device(device: str, sizes: Sizes, repeats: int, op: str) -> dict[str, Any]:
    """Step 3 for one op on one device (its own processes): party 0's median online seconds and the slowest
    party's median offline ones."""
    program = functools.partial(timing_program, sizes=sizes, repeats=repeats, op=op)
    per_party = smpc.run_local(program, parties=3, transport="zmq", device=device, timeout=600.0)
    row = per_party[0]
    return {**row, "median_online_s": statistics.median(row["online_s"]),
            "median_offline_s": max(statistics.median(p["offline_s"]) for p in per_party)}


def timing_table(device: str, cpu: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per op: the TOTAL a caller waits on each side (online median + the dealer's offline time) and their
    ratio first, the online and offline parts beside."""
    rows = []
    timed = {row["op"]: row for row in other}
    for c in cpu:
        if c["op"] not in timed:
            continue
        d = timed[c["op"]]
        cpu_total = c["median_online_s"] + c["median_offline_s"]
        device_total = d["median_online_s"] + d["median_offline_s"]
        rows.append({"op": c["op"], "size": c["size"], "cpu_total_s": cpu_total, "device_total_s": device_total,
                     "ratio": cpu_total / device_total, "cpu_s": c["median_online_s"],
                     "device_s": d["median_online_s"], "online_ratio": c["median_online_s"] / d["median_online_s"],
                     "cpu_offline_s": c["median_offline_s"], "device_offline_s": d["median_offline_s"],
                     "device": device})
    return rows


# -- driver ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda",
                        help="the device checked and timed against the CPU (default: cuda; cpu is the test mode)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (mul 10^4, matmul 64, epoch N = 1,280): under a minute on 2 CPU cores")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per op after the warm-up (default: 1, so that the check fits in about "
                             "5 minutes)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS),
                        help="steps to run (default: all three; 'timing' alone when a host's time is short)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"),
                        help="JSON report (default: gpu-check.json)")
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    device = protocols.check_device(args.device)
    sizes = QUICK if args.quick else FULL
    repeats = dict.fromkeys(TIMED_OPS, args.repeats)
    report: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "settings": {"device": str(device), "quick": args.quick, "repeats": repeats, "threads_per_party": 1,
                     "parties": 3, "sizes": sizes.__dict__},
    }

    def save(**parts: Any) -> None:
        report.update(parts, wall_s=time.perf_counter() - started)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")

    ring = check_ring_matmul(device, sizes.outer) if "ring" in args.steps else []
    save(ring_matmul=ring)
    ops = check_ops(device) if "ops" in args.steps else []
    save(op_checks=ops)
    # Keyed by role, not by name: the test mode times the cpu against itself.  Op by op, the device then the
    # cpu, each in its own processes, saved after each: a run cut short keeps whole pairs of what it measured.
    timings: dict[str, list[dict[str, Any]]] = {"device": [], "cpu": []}
    failures: dict[str, str] = {}
    for op in TIMED_OPS if "timing" in args.steps else ():
        for role, name in (("device", str(device)), ("cpu", "cpu")):
            print(f"timing {op} with shares on {name}...", flush=True)
            try:
                timings[role].append(time_device(name, sizes, repeats[op], op))
            except (smpc.PartyError, TimeoutError) as error:
                failures[f"{op} on {role}"] = str(error)
                print(f"timing {op} on {name}: FAIL: {error}", flush=True)
            save(timings=timings, timing_failures=failures)
    table = timing_table(str(device), timings["cpu"], timings["device"])
    ok = all(row["equal"] for row in ring) and all(row["ok"] for row in ops) and not failures
    save(table=table, ok=ok, steps=args.steps)
    print(f"\n3 parties + dealer over ZeroMQ + CurveZMQ on 127.0.0.1, one torch thread each; TOTAL = online + "
          f"offline, the time a caller waits; online: party 0's median over {args.repeats} timed run(s) "
          f"after a warm-up; offline: the dealer's phase before each run; "
          f"ratio = cpu / {device}")
    print_table(table, [("op", "op", "s"), ("size", "size", "s"), ("cpu_total_s", "cpu TOTAL s", ".3f"),
                        ("device_total_s", f"{device} TOTAL s", ".3f"), ("ratio", "ratio", ".2f"),
                        ("cpu_s", "cpu online s", ".3f"), ("device_s", f"{device} online s", ".3f"),
                        ("online_ratio", "online ratio", ".2f"),
                        ("cpu_offline_s", "cpu offline s", ".2f"), ("device_offline_s", f"{device} offline s", ".2f")])
    print(f"{'all checks passed' if ok else 'CHECKS FAILED'} (steps: {', '.join(args.steps)}); wrote {args.out}; "
          f"took {report['wall_s']:.0f} s")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    try:
        protocols.check_device(args.device)
    except ValueError as error:
        raise SystemExit(f"gpu_check: {error}") from None
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
