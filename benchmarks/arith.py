"""Shared arithmetic benchmark: 3 parties (and a dealer) as processes over ZeroMQ + CurveZMQ on 127.0.0.1.

    python -m benchmarks.arith [--parties 3] [--repeats 7] [--quick] [--json FILE]

For each op: median and interquartile range of wall time (on party 0, each run started after a barrier),
elements per second, bytes sent per party and rounds, next to the theoretical online cost of
ARCHITECTURE.md.  One torch thread per party.
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

import torch

import protocols
import smpc
from benchmarks.common import measure, print_table

_HEADER = 114  # frame header bytes per message, counted in bytes_sent


def _cases(quick: bool) -> list[tuple[str, tuple[int, ...]]]:
    if quick:
        return [("mul", (10**3,)), ("mul", (10**4,)), ("fxmul", (10**4,)), ("matmul", (64,)), ("truncate", (10**4,))]
    return [
        ("mul", (10**3,)), ("mul", (10**5,)), ("mul", (10**6,)),
        ("fxmul", (10**3,)), ("fxmul", (10**5,)), ("fxmul", (10**6,)),
        ("matmul", (128,)), ("matmul", (512,)),
        ("truncate", (10**3,)), ("truncate", (10**5,)), ("truncate", (10**6,)),
    ]


def theory(op: str, size: tuple[int, ...], n: int) -> tuple[int, int, int]:
    """(elements, online bytes per party, rounds) from ARCHITECTURE.md's cost table (payload only)."""
    if op == "matmul":
        side = size[0]
        return side * side, 8 * (n - 1) * 2 * side * side, 1
    k = size[0]
    if op == "mul":
        return k, 16 * (n - 1) * k, 1
    if op == "fxmul":
        return k, 24 * (n - 1) * k, 2
    return k, 8 * (n - 1) * k, 1


def bench_program(session: smpc.Session, cases: list[tuple[str, tuple[int, ...]]], repeats: int) -> list[dict]:
    """Runs on every party: share random operands, then time each op."""
    torch.set_num_threads(1)
    party = session.party
    rows = []
    for op, size in cases:
        shape = (size[0], size[0]) if op == "matmul" else size
        values = torch.empty(shape, dtype=torch.float64).uniform_(-4, 4) if session.rank == 0 else None
        x = session.share(values, owner=0)
        y = session.share(values, owner=0)
        share_x, share_y = x.local_share, y.local_share
        if op == "mul":
            run = functools.partial(protocols.mul, party, share_x, share_y, rescale=False)
        elif op == "fxmul":
            run = functools.partial(protocols.mul, party, share_x, share_y)
        elif op == "matmul":
            run = functools.partial(protocols.matmul, party, share_x, share_y, rescale=False)
        else:
            run = functools.partial(protocols.truncate, party, share_x * session.encoding.scale)
        result = measure(session, run, repeats)
        rows.append({"op": op, "size": list(size), **result.as_dict()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    cases = _cases(args.quick)
    program = functools.partial(bench_program, cases=cases, repeats=args.repeats)
    results = smpc.run_local(program, parties=args.parties, transport="zmq")
    rows = []
    for row in results[0]:
        elements, theory_bytes, theory_rounds = theory(row["op"], tuple(row["size"]), args.parties)
        sent = max(r[len(rows)]["bytes_sent"] for r in results)
        payload = sent - _HEADER * row["messages"]
        rows.append({
            **row,
            "name": {"mul": "mul (ring)", "fxmul": "mul + truncation", "matmul": "matmul (ring)",
                     "truncate": "truncation"}[row["op"]],
            "size_text": "x".join(str(s) for s in row["size"]) if row["op"] != "matmul" else f"{row['size'][0]}^2",
            "elements_per_s": elements / row["median_s"],
            "max_bytes_sent": sent,
            "theory_bytes": theory_bytes,
            "overhead_pct": 100.0 * (sent - theory_bytes) / theory_bytes,
            "payload_match": payload == theory_bytes,
            "theory_rounds": theory_rounds,
            "median_ms": row["median_s"] * 1e3,
            "iqr_ms": row["iqr_s"] * 1e3,
        })
    print(f"{args.parties} parties + dealer, processes over ZeroMQ + CurveZMQ on 127.0.0.1, one torch thread each, "
          f"{args.repeats} runs per op")
    print_table(rows, [
        ("name", "op", "s"), ("size_text", "size", "s"), ("median_ms", "median ms", ".2f"), ("iqr_ms", "IQR ms", ".2f"),
        ("elements_per_s", "elements/s", ".3g"), ("max_bytes_sent", "bytes/party", "d"),
        ("theory_bytes", "theory bytes", "d"), ("overhead_pct", "overhead %", ".3f"),
        ("rounds", "rounds", "d"), ("theory_rounds", "theory rounds", "d"),
    ])
    print("bytes/party: largest over parties, our 114-byte frame header included (TCP and CURVE framing not);"
          " truncation may add a round with probability about k * 2^-16 (it re-opens the rare ambiguous elements).")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"parties": args.parties, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
