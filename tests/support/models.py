"""Model share files for the inference tests, written as a training run writes them but for a known model (the
loan job's seeded initial weights) and a joint standardiser of known rows; and that model applied by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import smpc
import smpc.nn as snn
from smpc.loan.config import TrainConfig
from smpc.loan.data import torch_model
from smpc.loan.model_files import combine_shares, save_shares
from smpc.loan.schema import Schema, embedded_dataset, embedded_schema, load_csv
from tests.support.harness import Parties, run_parties

#: Rows of the embedded data the standardiser is computed from (and the tests score).
ROWS = 120


def write_model_shares(folder: Path, parties: Parties, hidden: int, rows: int = ROWS, *, private: bool = False
                       ) -> tuple[Schema, list[dict[str, str]]]:
    """``folder/party<rank>.npz`` for logistic regression (``hidden`` 0) or the MLP, under the embedded data's
    declared schema, by ``save_shares`` in an in-process session of ``parties``; returns the schema and the
    first ``rows`` rows of the embedded data.  ``private``: as a differentially private run writes them (public
    standardisation, rows clipped to the schema)."""
    schema = Schema.load(embedded_schema())
    _, all_rows = load_csv(embedded_dataset())
    features, _ = schema.encode(all_rows[:rows])
    numeric = features[:, : len(schema.numeric)]
    mean, inverse_std = numeric.mean(0), 1.0 / np.sqrt(numeric.var(0) + 1e-4)
    config = TrainConfig(hidden=hidden, seed=3, out=str(folder), dp_epsilon=1.0 if private else None)
    network = torch_model(schema.n_features, config)

    def program(session: smpc.Session) -> None:
        model = snn.from_torch(network, session, owner=0)
        shared = [session.share(torch.from_numpy(value) if session.rank == 0 else None, owner=0)
                  for value in (mean, inverse_std)]
        standardiser = None if private else (shared[0], shared[1])
        save_shares(folder, session, model, standardiser, schema, config)

    run_parties(program, parties)
    return schema, all_rows[:rows]


def by_hand(files: list[Path], features: np.ndarray) -> np.ndarray:
    """The combined share files' weights applied in numpy to encoded rows: standardise, layers, sigmoid."""
    meta, values = combine_shares([str(path) for path in files])
    plain = {name: value.numpy() for name, value in values.items()}
    x = features.copy()
    if meta["standardise"] == "joint":
        n_numeric = plain["standardise.mean"].shape[0]
        x[:, :n_numeric] = (x[:, :n_numeric] - plain["standardise.mean"]) * plain["standardise.inverse_std"]
    x = x @ plain["0.weight"].T + plain["0.bias"]
    if len(meta["layout"]) == 4:
        x = np.tanh(x) @ plain["2.weight"].T + plain["2.bias"]
    return 1.0 / (1.0 + np.exp(-x.reshape(-1)))
