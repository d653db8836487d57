"""The suite's PNG chart: time and bytes per op, secure against plain torch (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_chart(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit(f"the chart needs matplotlib: pip install 'smpc[bench]' ({error})") from None
    rows = report["rows"]
    groups = sorted({(r["parties"], r.get("protocol", "dealer")) for r in rows})
    labels = list(dict.fromkeys(f"{r['op']}\n{r['size']}" for r in rows))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(labels)), 8), sharex=True)
    width = 0.8 / (len(groups) + 1)
    positions = range(len(labels))
    for index, (n, protocol) in enumerate(groups):
        by_label = {f"{r['op']}\n{r['size']}": r for r in rows
                    if (r["parties"], r.get("protocol", "dealer")) == (n, protocol)}
        offset = (index - len(groups) / 2) * width
        top.bar([p + offset for p in positions], [by_label[k]["total_s"] if k in by_label else 0 for k in labels],
                width, label=f"secure, {n} parties, {protocol}")
        bottom.bar([p + offset for p in positions],
                   [by_label[k]["bytes_per_party"] if k in by_label else 0 for k in labels], width,
                   label=f"sent per party, {n} parties, {protocol}")
        bottom.scatter([p + offset for p in positions],
                       [by_label[k]["theory_payload_bytes"] if k in by_label else 0 for k in labels],
                       marker="_", s=200, color="black", label="theory" if index == 0 else None, zorder=3)
    plain = {f"{r['op']}\n{r['size']}": r["plain_s"] for r in rows}
    top.bar([p + (len(groups) / 2) * width for p in positions], [plain[k] for k in labels], width,
            label="plain torch", color="grey")
    top.set_yscale("log")
    top.set_ylabel("seconds: total (online median + offline)")
    top.legend(fontsize=8)
    top.set_title("smpc bench: secure (ZeroMQ + CurveZMQ, 127.0.0.1) vs plain torch; one torch thread each")
    bottom.set_yscale("symlog", linthresh=1000)
    bottom.set_ylabel("bytes sent per party (plain torch: 0)")
    bottom.legend(fontsize=8)
    bottom.set_xticks(list(positions))
    bottom.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
