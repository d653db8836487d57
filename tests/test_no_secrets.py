"""No secret, share or key in what the engine prints, raises, logs or audits.

In process: every key of a session (the dealer key and the pairwise keys) and every share it held are looked
for, as hex, base64, Python bytes literals and decimal integers, in the reprs users print, in the errors a
failure raises (their messages and remote tracebacks) and in the ABORT reasons peers receive.  As four separate
processes on CurveZMQ: the CurveZMQ secret keys and the model shares (from --out) are looked for in everything
the processes printed and in the audit logs, whose values must all be masked openings or the documented
reveals (see tests/smpc/test_train.py::test_training_opens_only_masks for their uniformity).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import protocols
import smpc
from network import read_secret_key
from tests.support.cli import finish, make_roster, start_smpc
from tests.support.harness import run_parties
from tests.support.loan import audited_words, bank_files, save_schema


def _spellings(key: bytes) -> list[str]:
    return [key.hex(), key.hex().upper(), base64.b64encode(key).decode(), repr(key)[2:-1]]


def _secrets_of(session: smpc.Session, shares: list[torch.Tensor]) -> list[str]:
    party = session.party
    keys = [party.dealer_prg._algorithm.key] + [prg._algorithm.key for prg in party.pair_prgs.values()]
    found = [spelling for key in keys for spelling in _spellings(bytes(key))]
    for share in shares:
        found += [str(v) for v in share.reshape(-1).tolist() if abs(v) >= 10**6]
    return found


def _leaky_program(session: smpc.Session) -> dict[str, Any]:
    x = session.share(torch.tensor([0.5, -1.25, 3.0], dtype=torch.float64) if session.rank == 0 else None, owner=0)
    y = x * x
    shown = [repr(session), repr(session.party), repr(x), repr(y), str(session.stats)]
    try:
        protocols.reveal(session.party, y.local_share, to=7)
    except ValueError as error:
        shown.append(str(error))
    return {"secrets": _secrets_of(session, [x.local_share, y.local_share]), "shown": shown}


def test_reprs_and_errors_carry_no_key_or_share() -> None:
    for result in run_parties(_leaky_program, 3):
        text = "\n".join(result["shown"])
        assert result["secrets"] and not [s for s in result["secrets"] if s in text]


def _failing_program(session: smpc.Session) -> None:
    x = session.share(torch.tensor([0.5, -1.25], dtype=torch.float64) if session.rank == 0 else None, owner=0)
    y = x * x
    if session.rank == 1:
        raise RuntimeError(f"party 1 gives up ({len(_secrets_of(session, [y.local_share]))} secrets known)")
    (y * y).reveal()


@pytest.mark.parametrize("transport", ["inproc", pytest.param("zmq", marks=pytest.mark.processes)])
def test_a_failure_reports_no_key_or_share(transport: str) -> None:
    """A party fails mid-protocol: the error the caller gets (with its remote traceback) and the reasons the
    peers were told hold no key; the secret-looking numbers it could hold are ring words, never printed."""
    with pytest.raises(smpc.PartyError) as caught:
        run_parties(_failing_program, 3, transport=transport, recv_timeout=20.0)
    text = f"{caught.value}\n{caught.value.remote_traceback}"
    assert "gives up" in text
    for word in text.split():
        digits = word.strip("(),.:'\"-")
        assert not (digits.isdigit() and len(digits) >= 12), f"a ring-sized number in an error: {word}"


@pytest.mark.processes
def test_a_training_run_prints_and_audits_no_key_or_share(tmp_path: Path) -> None:
    """Three `smpc party` processes and an `smpc dealer` train with --audit, --out and --show-loss: no CurveZMQ
    secret key appears in any output, audit log or share file's metadata; no model share appears among the
    audited values or in any output."""
    roster = make_roster(tmp_path)
    bank_files(tmp_path)
    save_schema(tmp_path / "schema.json")
    processes = [start_smpc("dealer", "--roster", roster.name, "--key", "dealer.key", cwd=tmp_path)]
    for rank in range(3):
        processes.append(start_smpc("party", "--rank", str(rank), "--roster", roster.name, "--key", f"party{rank}.key",
                                    "--data", f"bank{rank}.csv", "--schema", "schema.json", "--epochs", "2",
                                    "--audit", "audit", "--out", "model", "--show-loss", cwd=tmp_path))
    outcomes = finish(processes)
    assert all(code == 0 for code, _, _ in outcomes), outcomes
    printed = "\n".join(out + err for _, out, err in outcomes)
    secret_keys = [read_secret_key(tmp_path / f"{name}.key")[1].decode() for name in
                   ("party0", "party1", "party2", "dealer")]
    audits = {rank: (tmp_path / "audit" / f"audit-party{rank}.jsonl").read_text() for rank in range(3)}
    metas = []
    shares = []
    for rank in range(3):
        with np.load(tmp_path / "model" / f"party{rank}.npz", allow_pickle=False) as archive:
            metas.append(str(archive["meta"]))
            shares += [int(v) for name in archive.files if name.startswith("share/") for v in archive[name].ravel()]
    for key in secret_keys:
        assert key not in printed and all(key not in a for a in audits.values()) and all(key not in m for m in metas)
    audited = set()
    for text in audits.values():
        for line in text.splitlines():
            record = json.loads(line)
            if record["dtype"] == "int64":
                audited.update(audited_words(record).tolist())
    assert not audited & set(shares)
    assert not [v for v in shares if abs(v) >= 10**6 and str(v) in printed]
