"""Scale: one epoch of logistic regression at N = 10^5 and 10^6 rows, each bank sharing its own CSV in chunks.

    python -m benchmarks.scale [--rows 1000000 100000] [--features 50] [--batch-size 1024] [--parties 3]
                               [--protocol replicated|dealer] [--chunk-rows 50000] [--data DIR] [--out DIR]
                               [--repeats 3] [--timeout S] [--quick]

Before the runs, each bank's CSV (header, D feature columns, label; seeded standard normal features, labels
drawn from a random logistic model) is written in chunks with numpy; bank r holds a near-equal share of the
rows.  Each run of a size is one ``smpc.run_local`` (the parties as processes over ZeroMQ + CurveZMQ on
127.0.0.1, one torch thread each, so every run gets fresh processes and its own peak memory); the sizes take
turns, ``--repeats`` times, and the table shows medians over the runs.  In each party:

  1. The row counts are made public (one opening of a vector holding each bank's count in its own slot).
  2. Bank by bank, the owner reads its file ``--chunk-rows`` lines at a time (``np.loadtxt`` on a slice of
     the file's lines, float64) and shares each chunk as it is read; every party makes the same share calls,
     since the chunk sizes follow from the public counts.  The chunks stay a list (``ChunkedRows``): a batch
     is a view of one chunk, or a small concatenation where it straddles two, so no N-row tensor is copied.
  3. One untimed batch (a fresh process's one-off costs), then after a barrier one epoch of minibatch SGD
     with the manual loop of the CrypTen anchor (no autograd), w and b public zeros to start, lr 0.5:
         g = sigmoid(xb @ w + b) - yb;  w = w - xb^T @ g * (lr / rows in batch);  b = b - mean(g) * lr
  4. w and b are revealed; the parent runs the same loop in float64 numpy on the same rows (read back from
     the CSVs) and compares.

Reported per size: read+share seconds, epoch seconds (the slowest party's wall time; also the mean and median
batch time, and the most CPU seconds a party spent in the epoch, which other load on the machine hardly moves),
bytes sent per party and rounds in the epoch, peak resident memory of each party process (VmHWM; ``ru_maxrss``
is in the JSON too, but a party's can include its parent's peak: see ``peak_rss_gib``), training accuracy
of the secure and the plain model and max |w_secure - w_plain|; then t(N_max) / ((N_max / N_min) t(N_min))
against the target 1.3 and the peak memory against 4 GiB.  Writes scale.json and scale.md under ``--out``.
``--quick``: N = 2,000 and 20,000, D = 10, batch 256, chunks of 1,000 rows, one run each.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import itertools
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import smpc
from benchmarks.soak import peak_rss_kib
from smpc.bench.common import barrier, print_table, settle_all

LEARNING_RATE = 0.5
RATIO_TARGET = 1.3
MEMORY_TARGET_GIB = 4.0


@dataclass(frozen=True)
class Sizes:
    """Defaults of a run: the sizes N, the features D, rows per batch, rows read and shared at a time, and the
    runs of each size."""

    rows: tuple[int, ...]
    features: int
    batch_size: int
    chunk_rows: int
    repeats: int


FULL = Sizes(rows=(1_000_000, 100_000), features=50, batch_size=1024, chunk_rows=50_000, repeats=3)
QUICK = Sizes(rows=(2_000, 20_000), features=10, batch_size=256, chunk_rows=1_000, repeats=1)


# -- the banks' files ----------------------------------------------------------------------------------------
def bank_sizes(rows: int, banks: int) -> list[int]:
    """Rows held by each bank: near-equal, the first ones one larger (as ``np.array_split``)."""
    return [rows // banks + (1 if bank < rows % banks else 0) for bank in range(banks)]


def write_bank_files(folder: Path, rows: int, features: int, banks: int, chunk_rows: int,
                     seed: int = 0) -> list[Path]:
    """Write bank r's CSV as ``folder/bank{r}.csv`` a chunk at a time (no Python object per row is kept).

    Features are standard normal (6 decimals), labels Bernoulli(sigmoid(x @ w_true + b_true)) with
    w_true ~ N(0, 4/D) drawn once from ``seed``; bank r's rows come from a generator seeded (seed, r).
    This is public benchmark data, so numpy's generator is fine (it makes no share)."""
    truth = np.random.default_rng(seed)
    true_weights = 2.0 * truth.standard_normal(features) / np.sqrt(features)
    true_bias = 0.25
    header = ",".join([f"x{i}" for i in range(features)] + ["label"])
    formats = ["%.6f"] * features + ["%.0f"]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for bank, count in enumerate(bank_sizes(rows, banks)):
        generator = np.random.default_rng((seed, bank))
        path = folder / f"bank{bank}.csv"
        with open(path, "w", encoding="ascii") as handle:
            handle.write(header + "\n")
            for first in range(0, count, chunk_rows):
                size = min(chunk_rows, count - first)
                x = generator.standard_normal((size, features))
                probability = 1.0 / (1.0 + np.exp(-(x @ true_weights + true_bias)))
                y = (generator.random(size) < probability).astype(np.float64)
                np.savetxt(handle, np.column_stack([x, y]), fmt=formats, delimiter=",")
        paths.append(path)
    return paths


def count_rows(path: Path) -> int:
    """Data rows of a CSV (lines after the header), counted in 1 MiB blocks of bytes."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n") - 1


def read_chunks(path: Path, chunk_rows: int) -> Iterator[np.ndarray]:
    """The CSV's data rows as float64 arrays of ``chunk_rows`` rows (the last may be shorter); only one chunk's
    lines are ever in memory."""
    with open(path, "rb") as handle:
        handle.readline()  # the header
        while handle.peek(1):
            yield np.loadtxt(itertools.islice(handle, chunk_rows), delimiter=",", dtype=np.float64, ndmin=2)


# -- shared rows -----------------------------------------------------------------------------------------------
class ChunkedRows:
    """Shared rows kept as the list of chunks they were shared in; ``rows(first, last)`` is a view of one chunk,
    or the concatenation of a few views where the range straddles chunks (never a copy of all the rows)."""

    def __init__(self) -> None:
        self.chunks: list[smpc.SharedTensor] = []
        self.starts: list[int] = []
        self.count = 0

    def append(self, chunk: smpc.SharedTensor) -> None:
        self.chunks.append(chunk)
        self.starts.append(self.count)
        self.count += len(chunk)

    def rows(self, first: int, last: int) -> smpc.SharedTensor:
        if not 0 <= first < last <= self.count:
            raise IndexError(f"rows {first}:{last} outside 0:{self.count}")
        index = bisect.bisect_right(self.starts, first) - 1
        pieces = []
        while first < last:
            start = self.starts[index]
            end = min(last, start + len(self.chunks[index]))
            pieces.append(self.chunks[index][first - start : end - start])
            first, index = end, index + 1
        return pieces[0] if len(pieces) == 1 else smpc.cat(pieces)


def public_row_counts(session: smpc.Session, own_rows: int) -> list[int]:
    """Every bank's row count (public in this benchmark): one opening of a vector where each party puts its count
    in its own slot and zeros elsewhere."""
    slots = torch.zeros(session.world_size, dtype=torch.int64)
    slots[session.rank] = own_rows
    return [int(count) for count in session.party.open(slots, "row counts")]


def share_bank_files(session: smpc.Session, path: Path, chunk_rows: int) -> ChunkedRows:
    """Every bank's rows, shared chunk by chunk in bank order; this party reads only its own ``path``."""
    counts = public_row_counts(session, count_rows(path))
    data = ChunkedRows()
    for owner, count in enumerate(counts):
        own = read_chunks(path, chunk_rows) if owner == session.rank else None
        for first in range(0, count, chunk_rows):
            size = min(chunk_rows, count - first)
            chunk = next(own) if own is not None else None
            if chunk is not None and len(chunk) != size:
                raise ValueError(f"{path}: expected {size} rows in the chunk at row {first}, read {len(chunk)}")
            data.append(session.share(chunk, owner=owner))
    return data


# -- training ----------------------------------------------------------------------------------------------------
def initial_model(session: smpc.Session, features: int) -> tuple[smpc.SharedTensor, smpc.SharedTensor]:
    """w and b: public zeros (no communication)."""
    return (session.public(torch.zeros(features, dtype=torch.float64)),
            session.public(torch.zeros(1, dtype=torch.float64)))


def sgd_step(block: smpc.SharedTensor, features: int, w: smpc.SharedTensor, b: smpc.SharedTensor,
             lr: float) -> tuple[smpc.SharedTensor, smpc.SharedTensor]:
    """One batch of the manual loop; ``block`` holds the batch's feature columns, then its label."""
    xb, yb = block[:, :features], block[:, features]
    g = (xb @ w + b).sigmoid() - yb
    w = w - xb.t() @ g * (lr / len(block))
    b = b - g.mean() * lr
    return w, b


def secure_epoch(session: smpc.Session, data: ChunkedRows, features: int, batch: int,
                 lr: float) -> tuple[smpc.SharedTensor, smpc.SharedTensor, list[float]]:
    """One epoch over the shared rows in order, from zeros; returns (w, b, seconds of each batch)."""
    w, b = initial_model(session, features)
    seconds = []
    for first in range(0, data.count, batch):
        start = time.perf_counter()
        w, b = settle_all(sgd_step(data.rows(first, min(first + batch, data.count)), features, w, b, lr))
        seconds.append(time.perf_counter() - start)
    return w, b, seconds


def plain_epoch(x: np.ndarray, y: np.ndarray, batch: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """The same loop in float64 numpy."""
    w, b = np.zeros(x.shape[1]), np.zeros(1)
    for first in range(0, len(x), batch):
        xb, yb = x[first : first + batch], y[first : first + batch]
        g = 1.0 / (1.0 + np.exp(-(xb @ w + b))) - yb
        w = w - xb.T @ g * (lr / len(xb))
        b = b - g.mean() * lr
    return w, b


def peak_rss_gib() -> float:
    """This process's peak resident set size so far (VmHWM), in GiB.

    Not ``ru_maxrss``: a spawned party is vforked and exec'd, and Linux keeps the larger of the parent's peak and
    the child's own in the child's ``ru_maxrss``, so a party started after the parent held the plain reference's
    rows would report the parent's peak (a party forked by ``run_local``'s fork server starts from the server's,
    its imports only).  VmHWM belongs to the process's own memory map: for a forked party, the server's imported
    pages it shares and everything it touches itself."""
    return peak_rss_kib() / (1 << 20)


def maxrss_gib() -> float:
    """``ru_maxrss`` (KiB on Linux) in GiB: kept in the JSON beside VmHWM, see ``peak_rss_gib``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)


def party_program(session: smpc.Session, paths: list[str], features: int, batch: int, chunk_rows: int,
                  lr: float) -> dict[str, Any]:
    """One party: share every bank's file (reading only its own), train one epoch, reveal the model."""
    torch.set_num_threads(1)
    barrier(session)
    start = time.perf_counter()
    data = share_bank_files(session, Path(paths[session.rank]), chunk_rows)
    share_seconds = time.perf_counter() - start
    share_bytes = session.stats.bytes_sent
    peak_after_share = peak_rss_gib()
    # One untimed batch first: one-off costs of a fresh process (the first call of some torch functions, e.g.
    # the dealer's shape checks) belong to neither size's epoch.
    barrier(session)
    start = time.perf_counter()
    sgd_step(data.rows(0, min(batch, data.count)), features, *initial_model(session, features), lr)
    warmup_seconds = time.perf_counter() - start
    barrier(session)
    start, cpu_start = time.perf_counter(), time.process_time()
    w, b, batch_seconds = secure_epoch(session, data, features, batch, lr)
    epoch_seconds, epoch_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    stats = session.stats
    traffic = {"bytes_sent": stats.bytes_sent, "rounds": stats.rounds,
               "dealer_bytes_received": stats.dealer_bytes_received}
    return {"rank": session.rank, "rows": data.count, "chunks": len(data.chunks), "batches": len(batch_seconds),
            "batch_median_s": statistics.median(batch_seconds), "batch_min_s": min(batch_seconds),
            "share_s": share_seconds, "share_bytes_sent": share_bytes, "warmup_s": warmup_seconds,
            "epoch_s": epoch_seconds, "epoch_cpu_s": epoch_cpu_seconds, **traffic,
            "peak_after_share_gib": peak_after_share, "peak_gib": peak_rss_gib(),
            "ru_maxrss_gib": maxrss_gib(),
            "w": w.reveal(), "b": b.reveal()}


# -- the parent: reference, rows of the table ----------------------------------------------------------------
def load_all(paths: list[Path], chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Every bank's rows in bank order, as the plain reference sees them (read in chunks into one array)."""
    counts = [count_rows(path) for path in paths]
    rows = np.empty((sum(counts), 0))
    first = 0
    for path in paths:
        for chunk in read_chunks(path, chunk_rows):
            if rows.shape[1] == 0:
                rows = np.empty((sum(counts), chunk.shape[1]))
            rows[first : first + len(chunk)] = chunk
            first += len(chunk)
    return rows[:, :-1], rows[:, -1]


def accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((x @ w + b > 0) == (y > 0.5)))


def run_once(paths: list[Path], features: int, batch: int, parties: int, protocol: str, chunk_rows: int,
             timeout: float | None) -> dict[str, Any]:
    """One session on the banks' files: every party's report, and the machine's load average around it."""
    program = functools.partial(party_program, paths=[str(p) for p in paths], features=features, batch=batch,
                                chunk_rows=chunk_rows, lr=LEARNING_RATE)
    load_before = os.getloadavg()[0]
    results = smpc.run_local(program, parties=parties, transport="zmq", protocol=protocol, timeout=timeout)
    return {"parties": results, "load_average": [load_before, os.getloadavg()[0]]}


def summarize(rows: int, paths: list[Path], runs: list[dict[str, Any]], features: int, batch: int,
              chunk_rows: int) -> dict[str, Any]:
    """One table row from the runs of one size: medians over the runs of each run's slowest party, traffic of
    the first run (every run makes the same messages), each party's largest peak, and the check of every run's
    model against the plain loop on the same rows."""
    x, y = load_all(paths, chunk_rows)
    w_plain, b_plain = plain_epoch(x, y, batch, LEARNING_RATE)
    models = [(run["parties"][0]["w"].numpy(), run["parties"][0]["b"].numpy()) for run in runs]
    first = runs[0]["parties"]

    def median_of_slowest(key: str) -> float:
        return statistics.median(max(r[key] for r in run["parties"]) for run in runs)

    epochs = [max(r["epoch_s"] for r in run["parties"]) for run in runs]
    epoch, batches = statistics.median(epochs), first[0]["batches"]
    peaks = [max(run["parties"][rank]["peak_gib"] for run in runs) for rank in range(len(first))]
    w_secure, b_secure = models[0]
    return {
        "rows": rows, "features": features, "batch_size": batch, "batches": batches, "runs": len(runs),
        "share_s": median_of_slowest("share_s"), "epoch_s": epoch, "epoch_s_runs": epochs,
        "epoch_range_s": max(epochs) - min(epochs), "ms_per_batch": epoch / batches * 1e3,
        "median_ms_per_batch": median_of_slowest("batch_median_s") * 1e3,
        "min_ms_per_batch": median_of_slowest("batch_min_s") * 1e3, "epoch_cpu_s": median_of_slowest("epoch_cpu_s"),
        "warmup_batch_s": median_of_slowest("warmup_s"), "load_average": [run["load_average"] for run in runs],
        "bytes_sent": max(r["bytes_sent"] for r in first), "rounds": first[0]["rounds"],
        "share_bytes_sent": max(r["share_bytes_sent"] for r in first),
        "dealer_bytes_received": max(r["dealer_bytes_received"] for r in first),
        "peak_gib": peaks, "max_peak_gib": max(peaks),
        "peak_after_share_gib": [max(run["parties"][rank]["peak_after_share_gib"] for run in runs)
                                 for rank in range(len(first))],
        "ru_maxrss_gib": [max(run["parties"][rank]["ru_maxrss_gib"] for run in runs) for rank in range(len(first))],
        "accuracy": accuracy(x, y, w_secure, b_secure), "plain_accuracy": accuracy(x, y, w_plain, b_plain),
        "max_w_diff": max(float(np.max(np.abs(w - w_plain))) for w, _ in models),
        "b_diff": max(float(np.max(np.abs(b - b_plain))) for _, b in models),
        "w": w_secure.tolist(), "b": b_secure.tolist(), "plain_w": w_plain.tolist(), "plain_b": b_plain.tolist(),
    }


def scaling(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """t(N_max) / ((N_max / N_min) t(N_min)): 1 when the epoch time grows linearly with N.  Beside it, two
    figures that load from other work on the machine hardly moves: the same ratio of the parties' CPU seconds,
    and the ratio of the median batch times."""
    if len(rows) < 2:
        return None
    small, large = min(rows, key=lambda r: r["rows"]), max(rows, key=lambda r: r["rows"])
    factor = large["rows"] / small["rows"]
    ratio = large["epoch_s"] / (factor * small["epoch_s"])
    return {"small_rows": small["rows"], "large_rows": large["rows"], "ratio": ratio, "target": RATIO_TARGET,
            "within_target": ratio <= RATIO_TARGET,
            "median_batch_ratio": large["median_ms_per_batch"] / small["median_ms_per_batch"],
            "cpu_ratio": large["epoch_cpu_s"] / (factor * small["epoch_cpu_s"])}


COLUMNS = [
    ("rows", "N", ",d"), ("features", "D", "d"), ("batches", "batches", "d"), ("share_s", "read+share s", ".1f"),
    ("epoch_s", "epoch s", ".1f"), ("epoch_range_s", "range s", ".1f"), ("ms_per_batch", "ms/batch", ".1f"),
    ("median_ms_per_batch", "median ms/batch", ".1f"), ("epoch_cpu_s", "epoch CPU s", ".1f"),
    ("bytes_sent", "bytes/party", ",d"), ("rounds", "rounds", ",d"), ("max_peak_gib", "peak GiB/party", ".2f"),
    ("accuracy", "accuracy", ".4f"), ("plain_accuracy", "plain accuracy", ".4f"),
    ("max_w_diff", "max |w - w_plain|", ".2e"),
]


def markdown(report: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(heading.replace("|", "\\|") for _, heading, _ in COLUMNS) + " |",
             "| " + " | ".join("---:" for _ in COLUMNS) + " |"]
    for row in report["rows"]:
        lines.append("| " + " | ".join(format(row[key], fmt) for key, _, fmt in COLUMNS) + " |")
    lines.append("")
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def summary(report: dict[str, Any]) -> str:
    peak = max(row["max_peak_gib"] for row in report["rows"])
    text = f"peak memory per party: {peak:.2f} GiB (target at most {MEMORY_TARGET_GIB:g} GiB)"
    scale = report["scaling"]
    if scale is not None:
        factor = scale["large_rows"] / scale["small_rows"]
        text = (f"t(N={scale['large_rows']:,}) / ({factor:g} x t(N={scale['small_rows']:,})) = {scale['ratio']:.2f} "
                f"(target at most {RATIO_TARGET}; in CPU seconds {scale['cpu_ratio']:.2f}, median batch time ratio "
                f"{scale['median_batch_ratio']:.2f}); "
                + text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", help="sizes N to run (default 1000000 100000)")
    parser.add_argument("--features", type=int, help="D (default 50)")
    parser.add_argument("--batch-size", type=int, help="rows per batch (default 1024)")
    parser.add_argument("--chunk-rows", type=int, help="rows read and shared at a time (default 50000)")
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--protocol", choices=["replicated", "dealer"], default="replicated")
    parser.add_argument("--data", help="folder for the banks' CSVs (kept); default a temporary folder")
    parser.add_argument("--out", help="folder for scale.json and scale.md")
    parser.add_argument("--repeats", type=int, help="runs of each size, interleaved; medians reported (default 3)")
    parser.add_argument("--timeout", type=float, help="seconds each run may take (default no limit)")
    parser.add_argument("--quick", action="store_true", help="small sizes: N 2000 and 20000, D 10, batch 256")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    sizes = args.rows or list(defaults.rows)
    features = args.features or defaults.features
    batch = args.batch_size or defaults.batch_size
    chunk_rows = args.chunk_rows or defaults.chunk_rows
    repeats = args.repeats or defaults.repeats
    if args.protocol == "replicated" and args.parties != 3:
        parser.error("the replicated protocol runs exactly 3 parties")
    with tempfile.TemporaryDirectory(prefix="smpc-scale-") as temporary:
        folder = Path(args.data) if args.data else Path(temporary)
        paths = {size: write_bank_files(folder / f"n{size}", size, features, args.parties, chunk_rows)
                 for size in sizes}
        runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
        # Sizes take turns, so a burst of other work on the machine is unlikely to land on every run of one size.
        for repeat in range(repeats):
            for size in sizes:
                runs[size].append(run_once(paths[size], features, batch, args.parties, args.protocol, chunk_rows,
                                           args.timeout))
                party = max(runs[size][-1]["parties"], key=lambda r: r["epoch_s"])
                print(f"run {repeat + 1}/{repeats}, N={size:,}: epoch {party['epoch_s']:.1f} s", flush=True)
        rows = [summarize(size, paths[size], runs[size], features, batch, chunk_rows) for size in sizes]
    report = {"protocol": args.protocol, "parties": args.parties, "lr": LEARNING_RATE, "chunk_rows": chunk_rows,
              "repeats": repeats,
              "memory_target_gib": MEMORY_TARGET_GIB, "rows": rows, "scaling": scaling(rows)}
    dealer = " + dealer" if args.protocol == "dealer" else ""
    print(f"logistic regression, one epoch, {args.protocol} family: {args.parties} parties{dealer} as processes over "
          f"ZeroMQ + CurveZMQ on 127.0.0.1, one torch thread each; each bank shares its own CSV in chunks of "
          f"{chunk_rows:,} rows; lr {LEARNING_RATE}; times are medians of {repeats} runs")
    print_table(rows, COLUMNS)
    print(summary(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.json").write_text(json.dumps(report, indent=2))
        (out / "scale.md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
