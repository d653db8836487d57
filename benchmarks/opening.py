"""Broadcast against reduce-scatter/all-gather openings, by size: where the two-round form starts to pay.

    python -m benchmarks.opening [--parties 3] [--repeats 7]

Opens int64 tensors of 2^10 .. 2^20 elements both ways (3 processes over ZeroMQ + CurveZMQ on 127.0.0.1) and
prints the median time of each, so ``DEFAULT_GATHER_BYTES`` can be set from a measurement.
"""

from __future__ import annotations

import argparse
import functools

import torch

import smpc
from smpc.bench.common import measure, print_table

SIZES = [1 << p for p in range(10, 21, 2)]


def program(session: smpc.Session, repeats: int) -> list[dict]:
    torch.set_num_threads(1)
    party = session.party
    rows = []
    for size in SIZES:
        share = torch.randint(-(1 << 62), 1 << 62, (size,), dtype=torch.int64)  # timing only, not a share
        for threshold, form in ((None, "broadcast"), (0, "gather")):
            party.gather_bytes = threshold
            result = measure(session, functools.partial(party.open, share, "bench"), repeats)
            rows.append({"elements": size, "form": form, "median_ms": result.median * 1e3,
                         "bytes_sent": result.bytes_sent, "rounds": result.rounds})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    results = smpc.run_local(functools.partial(program, repeats=args.repeats), parties=args.parties)
    print_table(results[0], [("elements", "elements", "d"), ("form", "form", "s"), ("median_ms", "median ms", ".3f"),
                             ("bytes_sent", "bytes/party", "d"), ("rounds", "rounds", "d")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
