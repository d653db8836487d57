"""One epoch of logistic regression: 3 parties (and a dealer) over ZeroMQ + CurveZMQ against plain torch.

    python -m smpc.bench.training [--rows 10000] [--features 20] [--batch-size 128] [--epochs 3]

Synthetic data (seeded standard normal features, labels from a random logistic model), split evenly among
the parties, each sharing its own rows.  Reports the median seconds per epoch (party 0, each epoch after a
barrier), the ratio to the same epoch in plain torch (one thread), and bytes sent per party and rounds per
batch.  Model: Linear(D, 1) + Sigmoid, BCE (its fused logit gradient), SGD (lr 0.1), through smpc.nn.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import smpc
from smpc.bench.common import barrier


def synthetic(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)  # public benchmark data, not a share
    x = generator.standard_normal((rows, features))
    weights = generator.standard_normal(features) / np.sqrt(features)
    labels = (generator.random(rows) < 1.0 / (1.0 + np.exp(-x @ weights))).astype(np.float64)
    return x, labels


def logistic_model(features: int) -> torch.nn.Module:
    """Logistic regression with torch's default initialisation, drawn from a generator of its own (torch's global
    generator is never touched)."""
    model = torch.nn.Sequential(torch.nn.Linear(features, 1), torch.nn.Sigmoid()).double()
    generator = torch.Generator().manual_seed(0)
    bound = 1.0 / features**0.5
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_((torch.rand(parameter.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
    return model


def secure_epoch_runner(session: smpc.Session, rows: int, features: int, batch: int) -> Callable[[], int]:
    """Share the synthetic data (each party its own rows) and the model; return a function that trains one
    epoch and returns the number of batches."""
    return secure_logistic(session, rows, features, batch)[0]


def secure_logistic(session: smpc.Session, rows: int, features: int, batch: int
                    ) -> tuple[Callable[[], int], smpc.nn.Module]:
    """``secure_epoch_runner``'s epoch function, and the shared model it trains (to reveal its weights)."""
    x, y = synthetic(rows, features)
    parts = np.array_split(np.arange(rows), session.world_size)
    xs = smpc.cat([session.share(x[p] if session.rank == r else None, owner=r) for r, p in enumerate(parts)])
    ys = smpc.cat([session.share(y[p] if session.rank == r else None, owner=r) for r, p in enumerate(parts)])
    model = smpc.nn.from_torch(logistic_model(features), session, owner=0)
    optimizer = smpc.optim.SGD(model.parameters(), lr=0.1)
    criterion = smpc.nn.BCELoss()

    def epoch() -> int:
        batches = 0
        for first in range(0, rows, batch):
            index = torch.arange(first, min(first + batch, rows))
            loss = criterion(model(xs[index]), ys[index].reshape(-1, 1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batches += 1
        return batches

    return epoch, model


def secure_epochs(session: smpc.Session, rows: int, features: int, batch: int, epochs: int) -> dict:
    torch.set_num_threads(1)
    epoch = secure_epoch_runner(session, rows, features, batch)
    seconds, batches = [], 0
    for _ in range(epochs):
        barrier(session)
        start = time.perf_counter()
        batches = epoch()
        seconds.append(time.perf_counter() - start)
    stats = session.stats
    return {"seconds": seconds, "bytes_sent": stats.bytes_sent, "rounds": stats.rounds, "batches": batches,
            "dealer_bytes": stats.dealer_bytes_received}


def plain_epoch(rows: int, features: int, batch: int, repeats: int) -> list[float]:
    torch.set_num_threads(1)
    x, y = synthetic(rows, features)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = logistic_model(features)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        train_plain_epoch(model, xt, yt, batch)
        times.append(time.perf_counter() - start)
    return times


def train_plain_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    """One epoch in plain torch, as the secure one: SGD (lr 0.1, stateless) on BCE, batches in row order."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for first in range(0, len(x), batch):
        optimizer.zero_grad()
        out = model(x[first : first + batch]).reshape(-1)
        torch.nn.functional.binary_cross_entropy(out, y[first : first + batch]).backward()
        optimizer.step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--parties", type=int, default=3)
    args = parser.parse_args(argv)
    program = functools.partial(secure_epochs, rows=args.rows, features=args.features, batch=args.batch_size,
                                epochs=args.epochs)
    results = smpc.run_local(program, parties=args.parties, transport="zmq")
    secure = statistics.median(results[0]["seconds"])
    plain = statistics.median(plain_epoch(args.rows, args.features, args.batch_size, max(args.epochs, 5)))
    batches = results[0]["batches"]
    sent = max(r["bytes_sent"] for r in results)
    print(f"logistic regression, N={args.rows}, D={args.features}, batch {args.batch_size}, {args.parties} parties "
          f"+ dealer over ZeroMQ + CurveZMQ on 127.0.0.1, one torch thread each")
    spread = max(results[0]["seconds"]) - min(results[0]["seconds"])
    print(f"  secure: {secure:.2f} s per epoch (median of {args.epochs}, range {spread:.2f} s)")
    print(f"  plain torch: {plain * 1e3:.2f} ms per epoch; ratio {secure / plain:.0f}x")
    print(f"  per batch (last epoch): {sent / batches:.0f} bytes sent per party, "
          f"{results[0]['rounds'] / batches:.1f} rounds; dealer to the last party: "
          f"{results[-1]['dealer_bytes'] / batches:.0f} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
