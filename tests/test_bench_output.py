"""What `smpc bench` shows, without running the benchmark: with rows as wide as the full suite's (both protocol
families, the largest sizes, the largest figures a slow machine gives), every printed line fits a 160-column
terminal, a table too wide for it is split with its key columns repeated, and no two tick labels of the chart
overlap."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import pytest

from smpc.bench.chart import build_chart
from smpc.bench.common import TABLE_WIDTH, table_lines
from smpc.bench.suite import Case, cases, print_report


def _row(case: Case, parties: int, protocol: str) -> dict:
    """A summarised row with figures at the wide end of what the suite measures."""
    return {
        "op": case.op, "size": case.label, "parties": parties, "protocol": protocol, "median_s": 123.456789,
        "iqr_s": 12.3456, "runs": 5, "elements_per_s": 1.23456e6, "bytes_per_party": 8_123_456_789,
        "theory_bytes": 8_123_000_000, "theory_payload_bytes": 8_122_000_000, "bytes_vs_theory_pct": 12.345,
        "rounds": 12_345, "theory_rounds": 12_345, "openings": 999, "dealer_bytes": 9_876_543_210,
        "offline_s": 45.678, "plain_s": 0.000123, "ratio": 123_456.0, "compute_s": 100.0, "total_s": 169.134,
        "lan_s": 150.5, "wan_s": 1_234.5,
        "profile": {"local_compute_s": 1.2345, "prg_s": 0.1234, "serialization_s": 0.5678, "encryption_s": 0.9,
                    "waiting_s": 10.123},
    }


@pytest.fixture
def report() -> dict:
    groups = [(2, "dealer"), (3, "dealer"), (3, "replicated")]
    suite = list(dict.fromkeys(cases(False) + cases(True)))
    return {
        "settings": {"device": "cpu", "repeats": 5, "curve_round_trip_us": 52.0},
        "rows": [_row(case, n, protocol) for (n, protocol), case in itertools.product(groups, suite)],
        "opening": [{"parties": n, "protocol": protocol, "median_s": 0.0015} for n, protocol in groups],
    }


def test_the_printed_report_fits_a_160_column_terminal(report: dict, capsys: pytest.CaptureFixture) -> None:
    print_report(report)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    assert any("WAN ms" in line for line in lines) and any("online median ms" in line for line in lines)


def test_a_table_too_wide_is_split_with_its_key_columns_repeated() -> None:
    columns = [("name", "name", "s")] + [(f"c{i}", f"column {i:02d}", "d") for i in range(20)]
    rows = [{"name": "matmul 1024", **{f"c{i}": 10**9 * i for i in range(20)}}]
    lines = table_lines(rows, columns, keep=1, width=80)
    headings = [line for line in lines if line.lstrip().startswith("name")]
    assert len(headings) > 1 and max(len(line) for line in lines) <= 80
    assert all(line == "" or line.lstrip().startswith(("name", "matmul 1024")) for line in lines)
    shown = " ".join(headings)
    assert all(f"column {i:02d}" in shown for i in range(20))
    assert table_lines(rows, columns[:3], keep=1) == [
        "       name  column 00   column 01", "matmul 1024          0  1000000000"]


def _overlapping(boxes: list) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2) if a.overlaps(b)]


def test_the_charts_tick_labels_do_not_overlap(report: dict) -> None:
    figure = build_chart(report)
    try:
        renderer = figure.canvas.get_renderer()
        figure.canvas.draw()
        for axis in figure.axes:
            for labels in (axis.get_xticklabels(), axis.get_yticklabels()):
                boxes = [label.get_window_extent(renderer) for label in labels
                         if label.get_visible() and label.get_text()]
                assert not _overlapping(boxes), [label.get_text() for label in labels]
        assert len([t for t in figure.axes[1].get_xticklabels() if t.get_text()]) == len(
            {(r["op"], r["size"]) for r in report["rows"]})
    finally:
        plt.close(figure)
