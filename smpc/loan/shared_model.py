"""A party's model share file (``--out DIR`` at training: ``DIR/party<rank>.npz``, see ``model_files``) read back
into a new session as shares of an ``smpc.nn`` model of the same layout, for private inference.

Each party loads only its own file: its shares are uniformly random on their own and stay shares; no party
learns the model.  The file must be this party's (rank), of a session of the same shape (party count,
protocol family, fractional bits); ``model_fingerprint`` is what the parties compare so that all of them load
the same model.  Loading is local: no communication.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import smpc.nn as snn
from smpc.loan.schema import DataError, Schema
from smpc.session import Session
from smpc.tensor import SharedTensor

#: Meta entries every party's file of one model holds alike (rank differs; the training settings name each
#: host's own files, so they differ too).
SHARED_META = ("format", "parties", "protocol", "frac_bits", "layout", "schema", "standardise")


@dataclass(frozen=True)
class ModelShares:
    """One party's share file: its meta and its int64 share arrays by name (``0.weight``, ...,
    ``standardise.mean``, ``standardise.inverse_std``)."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def schema(self) -> Schema:
        return Schema.from_dict(self.meta["schema"])

    @property
    def clip(self) -> bool:
        """Whether the model was trained on rows clipped to the schema (a differentially private run)."""
        return self.meta.get("config", {}).get("dp_epsilon") is not None


def read_model_shares(directory: str | Path, rank: int) -> ModelShares:
    """``directory/party<rank>.npz``, checked to be party ``rank``'s share file."""
    path = Path(directory) / f"party{rank}.npz"
    if not path.is_file():
        raise DataError(f"{path}: no such file (--model-shares is the folder a training run's --out wrote, "
                        "holding this party's party<rank>.npz)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {name[len("share/"):]: archive[name] for name in archive.files if name.startswith("share/")}
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path}: not a model share file ({error})") from None
    if not isinstance(meta, dict) or any(key not in meta for key in (*SHARED_META, "rank")):
        raise DataError(f"{path}: not a model share file (its meta lacks {', '.join(SHARED_META)})")
    if meta["rank"] != rank:
        raise DataError(f"{path} holds party {meta['rank']}'s shares, not party {rank}'s: each party loads its own")
    return ModelShares(path, meta, arrays)


def check_session(shares: ModelShares, parties: int, protocol: str, frac_bits: int) -> None:
    """Refuse shares made by a session of another shape (they would not combine with the others' shares)."""
    meta, path = shares.meta, shares.path
    for name, expected in (("parties", parties), ("protocol", protocol), ("frac_bits", frac_bits)):
        if meta[name] != expected:
            raise DataError(f"{path}: the model was trained with {name} {meta[name]}, this session has {expected}; "
                            "run private inference on a roster like the training run's")


def model_fingerprint(shares: ModelShares) -> bytes:
    """16 bytes every party of one model computes alike from its file's public meta."""
    public = {key: shares.meta[key] for key in SHARED_META}
    public["clip"] = shares.clip
    return hashlib.sha256(json.dumps(public, sort_keys=True).encode("utf-8")).digest()[:16]


def shared_model(session: Session, shares: ModelShares
                 ) -> tuple[snn.Module, tuple[SharedTensor, SharedTensor] | None]:
    """The shared model (and the shared standardiser of a "joint" model; None for "public") of this party's
    file in ``session``.  Local: the layers start as public zeros and take this party's shares."""
    layers: list[snn.Module] = []
    for entry in shares.meta["layout"]:
        kind = entry.get("type")
        if kind == "Linear":
            layers.append(snn.Linear(session, int(entry["in"]), int(entry["out"]), init="zeros"))
        elif kind in ("Tanh", "Sigmoid", "ReLU"):
            layers.append({"Tanh": snn.Tanh, "Sigmoid": snn.Sigmoid, "ReLU": snn.ReLU}[kind]())
        else:
            raise DataError(f"{shares.path}: a model layer of type {kind!r} (share files hold Linear, Tanh, ReLU, "
                            "Sigmoid)")
    model = snn.Sequential(*layers)
    weights = {name: torch.from_numpy(array) for name, array in shares.arrays.items()
               if not name.startswith("standardise.")}
    try:
        model.load_state_shares(weights)
    except (ValueError, TypeError) as error:
        raise DataError(f"{shares.path}: the shares do not fit the model's layout ({error})") from None
    if shares.meta["standardise"] != "joint":
        return model, None
    try:
        standardiser = (SharedTensor(session, torch.from_numpy(shares.arrays["standardise.mean"])),
                        SharedTensor(session, torch.from_numpy(shares.arrays["standardise.inverse_std"])))
    except (KeyError, ValueError, TypeError) as error:
        raise DataError(f"{shares.path}: no usable standardiser shares ({error})") from None
    return model, standardiser
