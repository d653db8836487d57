"""Two training runs on different secret data give views that a two-sample test cannot tell apart.

Each party's audit log holds every value opened to it during training.  For two runs with the same public
settings (schema, split seed, shapes) but different bank data (rows 1-300 against rows 301-600 of the German
Credit file), the masked ring words each non-owner party saw are compared with a chi-square test of byte
homogeneity (255 degrees of freedom), and each party's words of both runs for uniformity.  Significance: the
test fails with probability at most 1e-6 when the views are identically distributed and uniform (1e-6 / 4 for
each of the four checks).  Party 0 also receives the test
predictions (and here no loss), which are outputs, not views of the inputs, and are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import run_smpc
from tests.support.loan import embedded_rows, masked_words, save_schema, write_csv
from tests.support.statistics import (
    ALPHA,
    chi_square_critical,
    homogeneity_statistic,
    uniformity_failures,
)

#: Every test here starts OS processes (smpc commands, or parties and a dealer as processes).
pytestmark = pytest.mark.processes


def test_views_of_two_different_data_sets_are_indistinguishable(tmp_path: Path) -> None:
    rows = embedded_rows()
    save_schema(tmp_path / "schema.json")
    for name, body in (("first", rows[1:301]), ("second", rows[301:601])):
        write_csv(tmp_path / f"{name}.csv", rows[0], body)
        # The dealer family's views (the replicated family's: tests/protocols/test_replicated.py)
        done = run_smpc("train", "--protocol", "dealer", "--data", f"{name}.csv", "--schema", "schema.json",
                        "--epochs", "2", "--audit", f"audit-{name}", cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
    critical = chi_square_critical(255, ALPHA / 4)
    for rank in (1, 2):
        first = masked_words(tmp_path / "audit-first", rank)
        second = masked_words(tmp_path / "audit-second", rank)
        # The same protocol, the same shapes; enough words for the byte tests (50,000 words give about 1,500
        # expected counts per byte value; comparisons open packed words, so two epochs open about 88,000).
        assert first.size == second.size > 50_000
        statistic = homogeneity_statistic(first, second)
        assert statistic < critical, f"party {rank}: chi-square {statistic:.1f} >= {critical:.1f}"
        assert uniformity_failures(np.concatenate([first, second]), ALPHA / 4) == []
