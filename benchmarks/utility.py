"""The utility table: test AUC on German Credit for secure training and fedavg, each without DP and with DP at
epsilon 1, 3 and 8, next to plain centralised training; fedavg on a random and on a skewed split.

    python -m benchmarks.utility [--seed 0] [--out utility.json]

Runs ``smpc train`` (three banks and a dealer over CurveZMQ) once per row with its defaults (10 epochs, or 10
rounds of 10 local steps, batch 32, lr 0.1, delta 1e-5, clip 1) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = [
    ("secure", []), ("secure, DP epsilon 8", ["--dp-epsilon", "8"]), ("secure, DP epsilon 3", ["--dp-epsilon", "3"]),
    ("secure, DP epsilon 1", ["--dp-epsilon", "1"]),
    ("fedavg", ["--mode", "fedavg"]), ("fedavg, DP epsilon 8", ["--mode", "fedavg", "--dp-epsilon", "8"]),
    ("fedavg, DP epsilon 3", ["--mode", "fedavg", "--dp-epsilon", "3"]),
    ("fedavg, DP epsilon 1", ["--mode", "fedavg", "--dp-epsilon", "1"]),
    ("fedavg, split by age", ["--mode", "fedavg", "--split-by", "age_in_years"]),
    ("secure, split by age", ["--split-by", "age_in_years"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, extra in ROWS:
            report = Path(folder) / "report.json"
            done = subprocess.run([sys.executable, "-m", "smpc", "train", "--seed", str(args.seed), "--report",
                                   str(report), *extra], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: failed: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                continue
            data = json.loads(report.read_text())
            rows.append({"run": name, "auc": data["secure"]["auc"], "accuracy": data["secure"]["accuracy"],
                         "plain_auc": data["plain"]["auc"], "epsilon_spent": data.get("epsilon_spent"),
                         "seconds": data["seconds"]})
            print(f"{name}: AUC {rows[-1]['auc']:.4f}", file=sys.stderr, flush=True)
    print("| run | test AUC | accuracy | epsilon spent | plain centralised AUC (same split) | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        spent = f"{row['epsilon_spent']:.2f}" if row["epsilon_spent"] is not None else "-"
        print(f"| {row['run']} | {row['auc']:.4f} | {row['accuracy']:.4f} | {spent} | {row['plain_auc']:.4f} | "
              f"{row['seconds']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
