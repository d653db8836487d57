"""Non-linear functions benchmark: 3 parties (and a dealer) as processes over ZeroMQ + CurveZMQ on 127.0.0.1.

    python -m benchmarks.nonlinear [--parties 3] [--protocol dealer] [--repeats 5] [--sizes 1000 100000]
                                   [--functions NAME ...] [--json FILE]

For each function and size: median and interquartile range of wall time (party 0, after a barrier), rounds
and bytes sent per party (largest over the parties, 114-byte frame headers included).  One torch thread per
party.  Inputs are drawn inside each function's documented domain.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from typing import Any

import torch

import smpc
from smpc.bench.common import measure, print_table

#: name -> (input range, what to run on the SharedTensor x (and y for comparisons)).
FUNCTIONS: dict[str, tuple[tuple[float, float], Callable[[Any, Any], Any]]] = {
    "x > y": ((-4.0, 4.0), lambda x, y: x > y),
    "relu": ((-4.0, 4.0), lambda x, y: x.relu()),
    "max (rows of 8)": ((-4.0, 4.0), lambda x, y: x.reshape(-1, 8).max(dim=1)),
    "sigmoid": ((-8.0, 8.0), lambda x, y: x.sigmoid()),
    "tanh": ((-4.0, 4.0), lambda x, y: x.tanh()),
    "exp": ((-3.0, 3.0), lambda x, y: x.exp()),
    "reciprocal": ((0.1, 50.0), lambda x, y: x.reciprocal()),
    "reciprocal (positive)": ((0.1, 50.0), lambda x, y: x.reciprocal(positive=True)),
    "log": ((0.1, 100.0), lambda x, y: x.log()),
    "sqrt": ((0.01, 1000.0), lambda x, y: x.sqrt()),
    "inv_sqrt": ((0.01, 1000.0), lambda x, y: x.rsqrt()),
    "softmax (rows of 8)": ((-4.0, 4.0), lambda x, y: x.reshape(-1, 8).softmax(dim=1)),
}


def bench_program(session: smpc.Session, names: list[str], sizes: list[int], repeats: int) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for name in names:
        (low, high), run = FUNCTIONS[name]
        for size in sizes:
            values = torch.empty(2, size, dtype=torch.float64).uniform_(low, high) if session.rank == 0 else None
            both = session.share(values, owner=0)
            x, y = both[0], both[1]
            result = measure(session, functools.partial(run, x, y), repeats)
            rows.append({"function": name, "size": size, **result.as_dict()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--protocol", choices=["dealer", "replicated"], default="dealer",
                        help="protocol family (the replicated one runs 3 parties and no dealer)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS), metavar="NAME")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    program = functools.partial(bench_program, names=args.functions, sizes=args.sizes, repeats=args.repeats)
    results = smpc.run_local(program, parties=args.parties, transport="zmq", protocol=args.protocol)
    rows = []
    for index, row in enumerate(results[0]):
        sent = max(party_rows[index]["bytes_sent"] for party_rows in results)
        rows.append({**row, "max_bytes_sent": sent, "bytes_per_element": sent / row["size"],
                     "median_ms": row["median_s"] * 1e3, "iqr_ms": row["iqr_s"] * 1e3})
    dealer = " + dealer" if args.protocol == "dealer" else ", replicated family (no dealer)"
    print(f"{args.parties} parties{dealer}, processes over ZeroMQ + CurveZMQ on 127.0.0.1, one torch thread each, "
          f"{args.repeats} runs per function")
    print_table(rows, [
        ("function", "function", "s"), ("size", "elements", "d"), ("median_ms", "median ms", ".2f"),
        ("iqr_ms", "IQR ms", ".2f"), ("rounds", "rounds", "d"), ("max_bytes_sent", "bytes/party", "d"),
        ("bytes_per_element", "bytes/party/element", ".1f"),
    ])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"parties": args.parties, "protocol": args.protocol, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
