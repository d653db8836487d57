"""The suite's PNG chart: time and bytes per op, secure against plain torch (matplotlib, no screen needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: Inches of figure width per op: the widest line of a tick label at 7 points takes about this per character,
#: and each op gets at least 0.9 inch, so that the labels, set horizontally, never touch.
_INCH_PER_CHAR = 0.075
_MIN_INCH_PER_OP = 0.9


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Draw the report's chart (``build_chart``) into a PNG at ``path``."""
    plt = _pyplot()
    figure = build_chart(report)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def tick_label(row: dict[str, Any]) -> str:
    """An op's tick label: its name over its size, a matmul's two shapes on lines of their own."""
    return f"{row['op']}\n{row['size']}".replace(" @ ", " @\n")


def build_chart(report: dict[str, Any]) -> Any:
    """The matplotlib figure: total seconds per op (log scale), then bytes sent per party against the theory."""
    plt = _pyplot()
    rows = report["rows"]
    groups = sorted({(r["parties"], r.get("protocol", "dealer")) for r in rows})
    labels = list(dict.fromkeys(tick_label(r) for r in rows))
    longest = max(len(line) for label in labels for line in label.splitlines())
    per_op = max(_MIN_INCH_PER_OP, _INCH_PER_CHAR * longest)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, per_op * len(labels)), 8), sharex=True)
    width = 0.8 / (len(groups) + 1)
    positions = range(len(labels))
    for index, (n, protocol) in enumerate(groups):
        by_label = {tick_label(r): r for r in rows if (r["parties"], r.get("protocol", "dealer")) == (n, protocol)}
        offset = (index - len(groups) / 2) * width
        top.bar([p + offset for p in positions], [by_label[k]["total_s"] if k in by_label else 0 for k in labels],
                width, label=f"secure, {n} parties, {protocol}")
        bottom.bar([p + offset for p in positions],
                   [by_label[k]["bytes_per_party"] if k in by_label else 0 for k in labels], width,
                   label=f"sent per party, {n} parties, {protocol}")
        bottom.scatter([p + offset for p in positions],
                       [by_label[k]["theory_payload_bytes"] if k in by_label else 0 for k in labels],
                       marker="_", s=200, color="black", label="theory" if index == 0 else None, zorder=3)
    plain = {tick_label(r): r["plain_s"] for r in rows}
    top.bar([p + (len(groups) / 2) * width for p in positions], [plain[k] for k in labels], width,
            label="plain torch", color="grey")
    top.set_yscale("log")
    top.set_ylabel("seconds: total (online median + offline)")
    top.legend(fontsize=8)
    top.set_title("smpc bench: secure (ZeroMQ + CurveZMQ, 127.0.0.1) vs plain torch; one torch thread each")
    _bytes_axis(bottom, max(r["bytes_per_party"] for r in rows))
    bottom.legend(fontsize=8)
    bottom.set_xticks(list(positions))
    bottom.set_xticklabels(labels, fontsize=7)
    figure.tight_layout()
    return figure


def _bytes_axis(axis: Any, largest: int) -> None:
    """Symmetric-log bytes (0 for plain torch), ticked at 0 and the powers of ten from 1,000 up: the linear
    stretch below 1,000 is short, and a tick inside it would sit on top of the 0."""
    axis.set_yscale("symlog", linthresh=1000)
    axis.set_yticks([0] + [10**power for power in range(3, max(3, math.ceil(math.log10(max(largest, 1)))) + 1)])
    axis.set_ylabel("bytes sent per party (plain torch: 0)")


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no screen); SystemExit saying how to install it if missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit(f"the chart needs matplotlib: pip install 'smpc[bench]' ({error})") from None
    return plt
