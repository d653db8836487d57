"""Private inference on shares, in-process: a model's share files (written as training writes them) are loaded by
each party; only the row owners receive predictions, equal to the plain model's within fixed-point error, and
every other party's audit log holds only uniformly masked openings.  The revealed model (TorchScript) computes
the same function of raw rows as the weights applied by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import smpc
from smpc.loan.audit import AuditLog
from smpc.loan.model_files import combine_shares
from smpc.loan.private_inference import private_predict
from smpc.loan.rows import feature_matrix, read_rows, schema_columns
from smpc.loan.schema import DataError
from smpc.loan.scripted import load_scripted, raw_row_model, save_scripted
from smpc.loan.shared_model import check_session, read_model_shares
from tests.support.harness import REPLICATED, Parties, run_parties
from tests.support.loan import audit_records, audited_words, write_csv
from tests.support.models import ROWS, by_hand, write_model_shares
from tests.support.statistics import ALPHA, uniformity_failures

#: The only masked openings inference makes (products, truncations, the sigmoid's and tanh's comparisons).
MASKED_OPENINGS = {"mul", "matmul", "truncate", "compare", "and", "bit conversion", "helper comparison"}


@pytest.mark.parametrize(("parties", "hidden", "owners", "private"), [
    (REPLICATED, 0, (1,), False), (REPLICATED, 8, (0, 2), False), (Parties(3), 0, (2,), False),
    (Parties(3), 8, (0, 1), False), (REPLICATED, 0, (0,), True),
], ids=["replicated-logistic", "replicated-mlp", "dealer-logistic", "dealer-mlp", "public-standardisation"])
def test_only_the_row_owners_learn_their_predictions(tmp_path: Path, parties: Parties, hidden: int,
                                                     owners: tuple[int, ...], private: bool) -> None:
    """Two owners' rows evaluated together; a model of a differentially private run (public standardisation,
    clipped rows) the same way."""
    schema, rows = write_model_shares(tmp_path / "model", parties, hidden, private=private)
    write_csv(tmp_path / "rows.csv", schema_columns(schema), [[row[c] for c in schema_columns(schema)] for row in rows])
    own_rows, lines = read_rows(tmp_path / "rows.csv", schema)
    halves = {owner: slice(i * ROWS // len(owners), (i + 1) * ROWS // len(owners)) for i, owner in enumerate(owners)}

    def program(session: smpc.Session) -> object:
        audit = AuditLog(tmp_path / "audit" / f"audit-party{session.rank}.jsonl")
        session.party.observers.append(audit)
        try:
            shares = read_model_shares(tmp_path / "model", session.rank)
            check_session(shares, session.world_size, session.protocol, session.encoding.frac_bits)
            assert shares.clip == private
            mine = halves.get(session.rank)
            features = None if mine is None else feature_matrix(schema, own_rows[mine], lines[mine], "rows.csv",
                                                                 clip=shares.clip)
            return private_predict(session, shares, features)
        finally:
            session.party.observers.remove(audit)
            audit.close()

    results = run_parties(program, parties)
    files = sorted((tmp_path / "model").glob("party*.npz"))
    expected = by_hand(files, feature_matrix(schema, own_rows, lines, "rows.csv", clip=False))
    for result in results:
        assert result.rows == [len(range(*halves[r].indices(ROWS))) if r in halves else 0 for r in range(3)]
        if result.rank not in owners:
            assert result.predictions is None
            continue
        got = result.predictions
        assert got is not None and got.shape == (len(range(*halves[result.rank].indices(ROWS))),)
        assert np.abs(got - expected[halves[result.rank]]).max() < 1e-3
    for rank in range(3):
        records = audit_records(tmp_path / "audit", rank)
        reveals = [record for record in records if record["op"] == "reveal"]
        assert [record["count"] for record in reveals] == ([len(range(*halves[rank].indices(ROWS)))]
                                                            if rank in owners else [])
        masked = [record for record in records if record["op"] != "reveal"]
        assert {record["op"] for record in masked} <= MASKED_OPENINGS
        words = [audited_words(record) for record in masked if record["dtype"] == "int64"]
        if words:  # the replicated family's party 0 makes the helper's material and opens nothing
            assert uniformity_failures(np.concatenate(words).view(np.uint64), ALPHA / 3) == []


def test_the_revealed_model_is_the_weights_appliedby_hand(tmp_path: Path) -> None:
    """The TorchScript module of the combined shares, on raw string rows, equals numpy on encoded rows."""
    schema, rows = write_model_shares(tmp_path / "model", REPLICATED, 8)
    files = sorted((tmp_path / "model").glob("party*.npz"))
    meta, values = combine_shares([str(path) for path in files])
    scripted, _, _ = load_scripted(save_scripted(raw_row_model(meta, values), meta, tmp_path / "model.pt"))
    raw = [[row[column] for column in scripted.columns] for row in rows]
    features, _ = schema.encode(rows)
    assert np.abs(scripted.encode(raw).numpy() - features).max() == 0.0
    assert np.abs(scripted(raw).numpy() - by_hand(files, features)).max() < 1e-9


def test_shares_of_another_party_or_session_are_refused(tmp_path: Path) -> None:
    write_model_shares(tmp_path / "model", REPLICATED, 0)
    with pytest.raises(DataError, match="holds party 1's shares, not party 0's"):
        (tmp_path / "model" / "party0.npz").unlink()
        (tmp_path / "model" / "party1.npz").rename(tmp_path / "model" / "party0.npz")
        read_model_shares(tmp_path / "model", 0)
    shares = read_model_shares(tmp_path / "model", 2)
    with pytest.raises(DataError, match="trained with protocol replicated, this session has dealer"):
        check_session(shares, 3, "dealer", 16)
    with pytest.raises(DataError, match="no such file"):
        read_model_shares(tmp_path / "nothing", 0)
