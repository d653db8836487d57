"""Private inference: the trained model stays secret-shared among the parties, a bank's rows are scored
on shares, and only that bank receives their predictions (``smpc party --predict``).

The rule for who gets what: every party that brings rows (``--data``) is a row owner and receives the
predictions of its own rows, and nothing else; a party without rows only helps.  All owners' rows are
evaluated together, so the cost in rounds does not grow with the number of owners (one sharing and one
reveal each apart).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from smpc.autograd import no_grad
from smpc.loan.schema import DataError
from smpc.loan.secure import standardise
from smpc.loan.shared_model import ModelShares, model_fingerprint, shared_model
from smpc.session import Session
from smpc.tensor import cat


@dataclass
class InferenceResult:
    """What one party knows after private inference: every party's row count (public: the shapes of the
    shared rows), its own rows' predictions (None without rows), its traffic and the seconds it took."""

    rank: int
    rows: list[int]
    predictions: np.ndarray | None = None
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def private_predict(session: Session, shares: ModelShares, features: np.ndarray | None) -> InferenceResult:
    """Score every owner's rows with the shared model; each owner alone learns its rows' probabilities.

    ``shares`` is this party's share file of the model (``read_model_shares``, checked against the session);
    ``features`` this party's encoded rows (N x D, ``rows.feature_matrix``) or None to help only.

    Steps:
      1. Agree (1 round): each party sends every other its model fingerprint (the share file's public meta,
         16 bytes) and its row count N_b (0: helps only); a different fingerprint is refused (DataError), as
         is a session where nobody brings rows.
      2. Load (local): this party's shares of the weights and, for a "joint" model, of the standardiser.
      3. Share (1 round per owner, in rank order): owner b secret-shares its N_b x D features; the rows are
         concatenated (local).
      4. Standardise (one fixed-point product: 2 rounds) the numeric columns with the shared mean and
         1/std, exactly as training did; skipped for a "public" model, whose rows are the schema's quotients.
      5. Evaluate the layers on shares (Linear: 2 rounds each; Tanh and Sigmoid: their approximations).
      6. Reveal owner b's slice of the output to b only (1 round per owner; the others learn nothing).

    Cost: rounds 4 + 2 x owners + R_sigmoid for logistic regression, 2 + R_tanh more for the MLP; measured
    with one owner (``smpc party --predict`` prints them): logistic regression 21 rounds in both families, the
    MLP 37 (replicated) and 39 (dealer); each more owner adds 2 (its sharing and its reveal), the row count
    none.  Bytes: the owner's sharing (replicated: 8 N_b D to each other party; dealer: the shape only), then
    per row the products and the approximations: for 1,000 rows and D = 61, about 0.45 MB per helping party
    and 1.4 MB for the owner (replicated, logistic regression), 3.0-3.6 MB (replicated MLP, 8 hidden),
    1.5 MB and 5.7 MB per party (dealer family, with the dealer's material made inline).

    Error: the secure probabilities differ from the plain model's (``scripted.RawRowModel`` on the same
    shares combined) by the sigmoid's approximation (max abs error 1e-3) plus fixed-point rounding (2^-16
    per truncation, amplified by the weights' magnitudes): within 1e-3 + 2^-12 for the loan models.
    """
    start = time.monotonic()
    rows = _agree(session, model_fingerprint(shares), 0 if features is None else len(features))
    model, standardiser = shared_model(session, shares)
    owners = [rank for rank, count in enumerate(rows) if count > 0]
    own = None if features is None else torch.from_numpy(np.ascontiguousarray(features, dtype=np.float64))
    inputs = cat([session.share(own if session.rank == owner else None, owner=owner) for owner in owners])
    if standardiser is not None:
        inputs = standardise(inputs, *standardiser)
    with no_grad():
        output = model(inputs).reshape(-1)
    result = InferenceResult(rank=session.rank, rows=rows)
    offset = 0
    for owner in owners:
        opened = output[offset : offset + rows[owner]].reveal(to=owner)
        offset += rows[owner]
        if opened is not None:
            result.predictions = opened.cpu().numpy()
    result.stats, result.seconds = session.stats.as_dict(), time.monotonic() - start
    return result


def _agree(session: Session, fingerprint: bytes, count: int) -> list[int]:
    """Step 1: every party's row count, once all parties hold the same model (one round)."""
    party = session.party
    tag = party.next_tag()
    mine = torch.cat([torch.frombuffer(bytearray(fingerprint), dtype=torch.int64), torch.tensor([count])])
    for peer in party.others:
        party.send(peer, tag, mine)
    rows = [0] * session.world_size
    rows[session.rank] = count
    for peer in party.others:
        theirs = party.recv(peer, tag, "model check").cpu()
        if theirs.shape != mine.shape or not torch.equal(theirs[:-1], mine[:-1]):
            raise DataError(f"party {peer} holds the shares of a different model; every party must pass the "
                            "share files of one training run (--model-shares)")
        rows[peer] = int(theirs[-1])
    party.rounds += 1
    if not any(rows):
        raise DataError("no party brought rows to score: the row owner passes --data FILE.csv")
    return rows
