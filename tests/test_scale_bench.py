"""benchmarks.scale: the banks' CSVs read back in chunks exactly as written, batches across chunk edges, and a
quick run end to end (processes over CurveZMQ) whose JSON has its rows, positive peak memories and weights
that match the plain float64 loop.  No timing is asserted."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import smpc
from benchmarks.scale import (
    ChunkedRows,
    bank_sizes,
    count_rows,
    load_all,
    main,
    plain_epoch,
    read_chunks,
    share_bank_files,
    write_bank_files,
)
from tests.support.harness import REPLICATED, run_parties

#: Largest accepted |w_secure - w_plain| (and |b| difference) after one quick epoch: the sigmoid's piecewise
#: error (3e-4) and the truncations over 79 batches stay well below it (measured: about 1e-4).
WEIGHT_TOLERANCE = 5e-3


def test_bank_files_read_back_in_chunks(tmp_path: Path) -> None:
    """Near-equal banks; every chunk but the last is full; the rows come back as written, 0/1 labels."""
    paths = write_bank_files(tmp_path, rows=1001, features=4, banks=3, chunk_rows=100)
    assert bank_sizes(1001, 3) == [334, 334, 333]
    assert [count_rows(p) for p in paths] == [334, 334, 333]
    chunks = list(read_chunks(paths[2], 100))
    assert [len(c) for c in chunks] == [100, 100, 100, 33] and all(c.shape[1] == 5 for c in chunks)
    x, y = load_all(paths, 64)
    assert x.shape == (1001, 4) and set(np.unique(y)) <= {0.0, 1.0}
    assert np.array_equal(np.concatenate(chunks)[:, :4], x[668:])


def _batches_across_chunks(session: smpc.Session, paths: list[str]) -> list[torch.Tensor]:
    data = share_bank_files(session, Path(paths[session.rank]), 7)
    assert isinstance(data, ChunkedRows) and data.count == 50
    return [data.rows(first, min(first + 16, 50)).reveal() for first in range(0, 50, 16)]


def test_shared_rows_straddle_chunks_and_banks(tmp_path: Path) -> None:
    """Chunks of 7 rows, banks of 17/17/16, batches of 16: every batch revealed equals those rows of the files."""
    paths = write_bank_files(tmp_path, rows=50, features=3, banks=3, chunk_rows=7)
    program = functools.partial(_batches_across_chunks, paths=[str(p) for p in paths])
    revealed = run_parties(program, REPLICATED)[0]
    x, y = load_all(paths, 7)
    expected = np.column_stack([x, y])
    for index, batch in enumerate(revealed):
        assert np.abs(batch.numpy() - expected[16 * index : 16 * index + 16]).max() < 2e-5


def test_plain_epoch_descends() -> None:
    """The reference loop lowers the logistic loss on separable-ish data."""
    generator = np.random.default_rng(1)
    x = generator.standard_normal((512, 3))
    y = (x @ np.array([2.0, -1.0, 0.5]) > 0).astype(np.float64)
    w, b = plain_epoch(x, y, 64, 0.5)
    assert np.mean((x @ w + b > 0) == (y > 0.5)) > 0.9


@pytest.mark.processes
def test_quick_run_writes_rows_and_matches_the_plain_loop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["--quick", "--out", str(out), "--data", str(tmp_path / "data"), "--timeout", "150"]) == 0
    printed = capsys.readouterr().out
    assert "peak GiB/party" in printed and "target at most 1.3" in printed
    report = json.loads((out / "scale.json").read_text())
    rows = report["rows"]
    assert [row["rows"] for row in rows] == [2_000, 20_000]
    for row in rows:
        assert row["features"] == 10 and row["batches"] == -(-row["rows"] // 256) and row["runs"] == 1
        assert len(row["peak_gib"]) == 3 and all(peak > 0 for peak in row["peak_gib"]), row["peak_gib"]
        assert row["epoch_s"] > 0 and row["median_ms_per_batch"] > 0 and row["bytes_sent"] > 0 and row["rounds"] > 0
        assert row["max_w_diff"] < WEIGHT_TOLERANCE and row["b_diff"] < WEIGHT_TOLERANCE, row
        assert abs(row["accuracy"] - row["plain_accuracy"]) < 0.01
    assert report["scaling"]["small_rows"] == 2_000 and report["scaling"]["ratio"] > 0
    assert (out / "scale.md").read_text().startswith("| N |")
