"""``train_party``: the whole loan job on one party.

Every party runs it.  Party ``b`` encodes only its own rows with the public schema and secret-shares them; the
parties check that they use the same schema, then train on shares (``secure``; ``dp_training`` with
differential privacy) or by federated averaging (``fedavg_job``); party 0, the model owner, also holds the test
rows and receives only the test predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from smpc.loan.audit import AuditLog
from smpc.loan.config import TrainConfig
from smpc.loan.data import party_data
from smpc.loan.fedavg_job import train_fedavg
from smpc.loan.multiclass import check_job
from smpc.loan.results import PartyResult
from smpc.loan.schema import DataError
from smpc.loan.secure import train_secure
from smpc.session import Session


def train_party(session: Session, config: TrainConfig, progress: Callable[[str], None] | None = None
                ) -> PartyResult:
    """The whole job on one party; returns what this party may know (party 0: test predictions)."""
    start = time.monotonic()
    audit = AuditLog(Path(config.audit) / f"audit-party{session.rank}.jsonl") if config.audit else None
    if audit is not None:
        session.party.observers.append(audit)
    try:
        data = party_data(config, session)
        agree_schema(session, data.schema.fingerprint())
        check_job(config, data.schema)
        if config.mode == "fedavg":
            return train_fedavg(session, config, data, progress, start)
        return train_secure(session, config, data, progress, start)
    finally:
        if audit is not None:
            session.party.observers.remove(audit)
            audit.close()


def agree_schema(session: Session, fingerprint: bytes) -> None:
    """Refuse to start unless every party uses the same public schema."""
    party = session.party
    tag = party.next_tag()
    mine = torch.frombuffer(bytearray(fingerprint), dtype=torch.uint8)
    for peer in party.others:
        party.send(peer, tag, mine)
    for peer in party.others:
        if not torch.equal(party.recv(peer, tag, "schema check").cpu(), mine):
            raise DataError(f"party {peer} uses a different schema (columns, categories, scales or label); "
                            "give every party the same schema file")
