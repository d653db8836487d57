"""The article's digit experiment on the embedded UCI digits: one small CNN trained on the same seeded stratified
70/30 split, centrally and by federated averaging among three data owners, and (later) on shares.

    python -m benchmarks.digits [--seed 0] [--split-by digit|random] [--quick] [--mpc-batches N] [--inference]
                                [--out digits.json]

Model: Conv2d(1, 8, 3, padding=1), ReLU, MaxPool2d(2), Flatten, Linear(128, 10), LogSoftmax; loss NLLLoss; plain
SGD with momentum 0.9, batch 32, seeded initialisation and batch order.
  * central: plain torch on all training rows (no party sends anything).
  * fedavg: the training rows split among three data owners, by digit as the article splits MNIST (owner 0 has
    0-3, owner 1 4-6, owner 2 7-9) or at random; each round every owner trains the global model on its own rows
    for a few local epochs in plain torch, and the row-weighted average of the updates is computed under MPC
    (3 parties, replicated family, in-process): every owner secret-shares its weighted update, the sum is local
    and only the sum is revealed -- the secure aggregation of ``smpc.federated.fedavg`` (the loan job's), with
    NLL instead of BCE as the local loss.  Its bytes are measured at the transport (mean over the owners).
  * MPC training on shares (``benchmarks.digits_mpc``): the same seeded CNN, epochs, batch order rule, lr and
    momentum, trained on shares with smpc.autograd in one in-process session (3 parties, replicated family):
    each owner (the same split as fedavg's) shares its images and one-hot labels, party 0 the initial weights;
    the trained weights are revealed to party 0 only, which tests them in plain torch.  ``--mpc-batches N``
    stops it after N batches (``--quick``: 3).  About 0.3 s per batch of 32 on two cores, 2.4 MB per party
    (30 epochs of the 1257 training rows: about 270 s, 2.8 GB per party).
  * with ``--inference``: the central model's forward pass on shares (images from one party, weights from
    another, logits to the first), to show the shared conv/pool operations reach the same accuracy.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import smpc
from benchmarks import digits_mpc
from smpc.digits import Digits, load_digits, split_by_digit, split_evenly, stratified_split
from smpc.federated import flat_parameters, load_flat, public_row_counts
from smpc.nn import functional as SF


@dataclass(frozen=True)
class Settings:
    """Public settings of one run of the experiment (every party uses the same)."""

    seed: int = 0
    epochs: int = 30
    rounds: int = 30
    local_epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    split_by: str = "digit"
    mpc_batches: int | None = None


#: ``--quick``: enough to train (central accuracy above 0.9) in a few seconds, for the test; the training on
#: shares stops after a few batches (about 0.3 s each on two cores).
QUICK = {"epochs": 6, "rounds": 2, "mpc_batches": 3}


@dataclass(frozen=True)
class Row:
    """One line of the table: a method, its test accuracy (None: not run), seconds and bytes per party."""

    method: str
    accuracy: float | None
    seconds: float | None
    bytes_per_party: int | None
    note: str = ""


@contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one thread inside the block (a model this small trains about 3x faster on one thread than on two
    busy cores); the previous setting comes back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10), torch.nn.LogSoftmax(dim=1),
    )


def seeded_model(seed: int) -> torch.nn.Sequential:
    """``make_model`` initialised from ``seed`` without touching torch's global generator for anyone else."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make_model()


def train_epochs(model: torch.nn.Module, data: Digits, *, epochs: int, lr: float, batch_size: int,
                 order_seed: list[int]) -> None:
    """``epochs`` passes of SGD (momentum 0.9) with NLLLoss over ``data`` in a public seeded batch order."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([*order_seed, epoch]).permutation(len(data)))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            torch.nn.functional.nll_loss(model(images[rows]), labels[rows]).backward()
            optimizer.step()


def accuracy(model: torch.nn.Module, data: Digits) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.images)).argmax(dim=1).numpy()
    return float((predicted == data.labels).mean())


def central_row(train: Digits, test: Digits, settings: Settings) -> tuple[Row, torch.nn.Sequential]:
    """Plain torch on all training rows; the row and the trained model."""
    start = time.perf_counter()
    model = seeded_model(settings.seed)
    train_epochs(model, train, epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size,
                 order_seed=[settings.seed])
    return Row("central plain torch", accuracy(model, test), time.perf_counter() - start, 0), model


def owners_rows(train: Digits, settings: Settings) -> list[np.ndarray]:
    if settings.split_by == "digit":
        return split_by_digit(train.labels)
    return split_evenly(train.labels, 3, settings.seed)


def secure_fedavg(session: smpc.Session, model: torch.nn.Module, mine: Digits, settings: Settings,
                  evaluate: Callable[[torch.nn.Module], float] | None = None) -> list[float]:
    """Federated averaging with the secure aggregation of ``smpc.federated.fedavg`` (its steps 1-4, without DP),
    NLL as the local loss: per round, local epochs on this owner's rows, then the row-weighted sum of the
    updates shared by every owner (1 round each), added locally and revealed (1 round).  Returns ``evaluate``
    of the global model after each round (on every party; empty without ``evaluate``)."""
    counts = public_row_counts(session, len(mine))
    weight = counts[session.rank] / sum(counts)
    global_flat = flat_parameters(model)
    history = []
    for round_index in range(settings.rounds):
        train_epochs(model, mine, epochs=settings.local_epochs, lr=settings.lr, batch_size=settings.batch_size,
                     order_seed=[settings.seed, round_index, session.rank])
        weighted = (flat_parameters(model) - global_flat) * weight
        total = session.share(weighted if session.rank == 0 else None, owner=0)
        for owner in range(1, session.world_size):
            total = total + session.share(weighted if session.rank == owner else None, owner=owner)
        global_flat = global_flat + total.reveal()
        load_flat(model, global_flat)
        if evaluate is not None:
            history.append(evaluate(model))
    return history


def fedavg_row(train: Digits, test: Digits, settings: Settings) -> Row:
    """Three owners (rows split by ``settings.split_by``), secure aggregation in one in-process session of the
    replicated family; accuracy of the final global model on the test rows, seconds of the whole run, bytes
    sent per owner (mean) as measured at the transport."""
    owners = owners_rows(train, settings)
    initial = seeded_model(settings.seed)  # here, not in the parties' threads: torch's seeding is global

    def program(session: smpc.Session) -> tuple[float, int]:
        model = copy.deepcopy(initial)
        secure_fedavg(session, model, train.subset(owners[session.rank]), settings)
        return accuracy(model, test), session.stats.bytes_sent

    start = time.perf_counter()
    results = smpc.run_local(program, parties=3, transport="inproc", protocol="replicated")
    seconds = time.perf_counter() - start
    accuracies = {round(result[0], 12) for result in results}
    if len(accuracies) != 1:
        raise RuntimeError(f"the owners ended with different models: accuracies {sorted(accuracies)}")
    sent = round(sum(result[1] for result in results) / len(results))
    note = f"split by {settings.split_by}, {settings.rounds} rounds x {settings.local_epochs} local epoch(s)"
    return Row(f"fedavg, split by {settings.split_by}", results[0][0], seconds, sent, note)


def owners_in_order(train: Digits, settings: Settings) -> Digits:
    """The training rows as the MPC run holds them: owner 0's, then owner 1's, then owner 2's."""
    return train.subset(np.concatenate(owners_rows(train, settings)))


def train_on_shares(train: Digits, settings: Settings) -> tuple[torch.nn.Sequential, float, int]:
    """``benchmarks.digits_mpc``'s training of ``seeded_model(seed)`` on shares, in one in-process session of
    the replicated family (3 parties, each a data owner of ``owners_rows``; party 0 also owns the model):
    ``settings.epochs`` epochs (at most ``settings.mpc_batches`` batches when set), the trained weights
    revealed to party 0 only.  Returns that model, the seconds of the whole run and the bytes sent per party
    (mean, measured at the transport)."""
    owners = owners_rows(train, settings)
    initial = seeded_model(settings.seed)  # here, not in the parties' threads: torch's seeding is global

    def program(session: smpc.Session) -> tuple[torch.nn.Module | None, int]:
        mine = train.subset(owners[session.rank])
        owned = [(mine.images, mine.labels) if owner == session.rank else (mine.images[:0], mine.labels[:0])
                 for owner in range(session.world_size)]
        images, onehot = digits_mpc.share_rows(session, owned)
        shared = digits_mpc.train(session, initial, images, onehot, epochs=settings.epochs, lr=settings.lr,
                                  batch_size=settings.batch_size, order_seed=[settings.seed],
                                  max_batches=settings.mpc_batches)
        return shared.reveal(to=0), session.stats.bytes_sent

    start = time.perf_counter()
    results = smpc.run_local(program, parties=3, transport="inproc", protocol="replicated")
    seconds = time.perf_counter() - start
    model = results[0][0]
    assert isinstance(model, torch.nn.Sequential)
    return model, seconds, round(sum(result[1] for result in results) / len(results))


def mpc_row(train: Digits, test: Digits, settings: Settings) -> Row:
    """The same CNN, same initial weights and hyperparameters as the central run, trained on shares
    (``train_on_shares``); test accuracy of the trained weights (revealed to the model owner, party 0, and
    evaluated there in plain torch), seconds and bytes per party."""
    model, seconds, sent = train_on_shares(train, settings)
    budget = f"{settings.epochs} epochs" if settings.mpc_batches is None else f"{settings.mpc_batches} batches only"
    note = f"rows shared by 3 owners (split by {settings.split_by}), {budget}, weights revealed to party 0"
    return Row("MPC training on shares", accuracy(model, test), seconds, sent, note)


def inference_row(model: torch.nn.Sequential, test: Digits) -> Row:
    """The central model's test accuracy when it runs on shares (``smpc.nn.functional``): party 0 shares the
    test images, party 1 the weights, the logits are revealed to party 0 only (private inference; 3 parties,
    replicated family, in-process).  Bytes sent per party (mean) as measured."""
    conv, linear = model[0], model[4]
    assert isinstance(conv, torch.nn.Conv2d) and isinstance(linear, torch.nn.Linear)
    weights = [p.detach().double() for p in (*conv.parameters(), *linear.parameters())]  # weight, bias each
    images = torch.from_numpy(test.images).double()

    def program(session: smpc.Session) -> tuple[float | None, int]:
        x = session.share(images if session.rank == 0 else None, owner=0)
        cw, cb, lw, lb = (session.share(w if session.rank == 1 else None, owner=1) for w in weights)
        hidden = SF.max_pool2d(SF.conv2d(x, cw, cb, padding=1).relu(), 2)
        logits = (SF.flatten(hidden) @ lw.t() + lb).reveal(to=0)
        correct = None if logits is None else float((logits.argmax(1).numpy() == test.labels).mean())
        return correct, session.stats.bytes_sent

    start = time.perf_counter()
    results = smpc.run_local(program, parties=3, transport="inproc", protocol="replicated")
    sent = round(sum(result[1] for result in results) / len(results))
    return Row("central model, inference on shares", results[0][0], time.perf_counter() - start, sent,
               "forward pass only (smpc.nn.functional)")


def run(settings: Settings, *, inference: bool = False) -> list[Row]:
    """The table's rows: central, fedavg, MPC training (and with ``inference`` the central model's accuracy
    when it runs on shares)."""
    data = load_digits()
    train_rows, test_rows = stratified_split(data.labels, 0.3, settings.seed)
    train, test = data.subset(train_rows), data.subset(test_rows)
    central, model = central_row(train, test, settings)
    rows = [central, fedavg_row(train, test, settings), mpc_row(train, test, settings)]
    return rows + [inference_row(model, test)] if inference else rows


def _cell(value: float | int | None, form: str) -> str:
    return "not yet" if value is None else format(value, form)


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| method | test accuracy | seconds | bytes per party | note |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.method} | {_cell(row.accuracy, '.4f')} | {_cell(row.seconds, '.1f')} | "
                     f"{_cell(row.bytes_per_party, ',d')} | {row.note} |")
    return "\n".join(lines)


def parse_settings(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.digits", description=__doc__.splitlines()[0])
    defaults = Settings()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--epochs", type=int, help=f"central epochs (default {defaults.epochs})")
    parser.add_argument("--rounds", type=int, help=f"fedavg rounds (default {defaults.rounds})")
    parser.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--split-by", choices=["digit", "random"], default=defaults.split_by,
                        help="how the training rows are split among the three owners (default: digit)")
    parser.add_argument("--mpc-batches", type=int, help="stop the training on shares after this many batches")
    parser.add_argument("--quick", action="store_true", help=f"fewer epochs, rounds and batches on shares ({QUICK})")
    parser.add_argument("--inference", action="store_true",
                        help="add a row: the central model's accuracy when its forward pass runs on shares")
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else {"epochs": defaults.epochs, "rounds": defaults.rounds}
    epochs = args.epochs if args.epochs is not None else sizes["epochs"]
    rounds = args.rounds if args.rounds is not None else sizes["rounds"]
    mpc_batches = args.mpc_batches if args.mpc_batches is not None else sizes.get("mpc_batches")
    counts = (epochs, rounds, args.local_epochs, 1 if mpc_batches is None else mpc_batches)
    if min(counts) < 1 or not (args.lr > 0 and math.isfinite(args.lr)):
        parser.error("epochs, rounds, local epochs and MPC batches must be positive, and the learning rate a "
                     "positive number")
    return Settings(args.seed, epochs, rounds, args.local_epochs, args.lr, defaults.batch_size, args.split_by,
                    mpc_batches), args


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_settings(argv)
    with single_threaded():
        rows = run(settings, inference=args.inference)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
