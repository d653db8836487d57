"""Model share files: each party's shares of the trained model (``--out``), and the model owner's step that
combines every party's file into the plain weights (``smpc reveal-model``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import smpc.nn as snn
from smpc.files import write_private
from smpc.loan.config import TrainConfig
from smpc.loan.schema import DataError, Schema
from smpc.session import Session
from smpc.tensor import SharedTensor

#: Model file format version written by ``--out``.
MODEL_FORMAT = 1


def layout(model: snn.Module) -> list[dict[str, Any]]:
    layers = model.children() if isinstance(model, snn.Sequential) else (model,)
    described = []
    for layer in layers:
        if isinstance(layer, snn.Linear):
            out_features, in_features = layer.weight.shape
            described.append({"type": "Linear", "in": int(in_features), "out": int(out_features)})
        else:
            described.append({"type": type(layer).__name__})
    return described


def save_shares(directory: Path, session: Session, model: snn.Module,
                standardiser: tuple[SharedTensor, SharedTensor] | None, schema: Schema, config: TrainConfig) -> Path:
    """Write this party's shares of the model (and of the standardiser) to ``directory/party<rank>.npz``.

    Format: int64 arrays ``share/<parameter>`` (this party's additive shares mod 2^64), plus
    ``share/standardise.mean`` and ``share/standardise.inverse_std`` when the run standardised with joint
    statistics (``meta["standardise"]`` is "joint"; "public" when the declared scales alone were used, as under
    differential privacy), and a JSON string ``meta`` with the format version, party rank and count,
    fractional bits, the model layout and the public schema.  Written to a temporary file (mode 0600, in a
    folder made 0700), flushed and renamed, so a file is either whole or absent.  Never the plain weights.
    """
    arrays = {f"share/{name}": share.numpy() for name, share in model.state_shares().items()}
    if standardiser is not None:
        arrays["share/standardise.mean"] = standardiser[0].local_share.numpy()
        arrays["share/standardise.inverse_std"] = standardiser[1].local_share.numpy()
    meta = {"format": MODEL_FORMAT, "rank": session.rank, "parties": session.world_size,
            "protocol": session.protocol,
            "frac_bits": session.encoding.frac_bits, "layout": layout(model), "schema": schema.to_dict(),
            "standardise": "public" if standardiser is None else "joint", "config": asdict(config)}
    contents: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **arrays}
    return write_private(Path(directory) / f"party{session.rank}.npz", lambda handle: np.savez(handle, **contents))


def combine_shares(paths: list[str | Path]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The model owner's step: add every party's shares mod 2^64 and decode.  Returns (meta, plain values)."""
    loaded = []
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                loaded.append((meta, {k[len("share/"):]: archive[k] for k in archive.files if k.startswith("share/")}))
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{path}: not a model share file ({error})") from None
    metas = [meta for meta, _ in loaded]
    parties = metas[0]["parties"]
    ranks = sorted(meta["rank"] for meta in metas)
    if ranks != list(range(parties)):
        raise DataError(f"need the share files of all {parties} parties exactly once; got ranks {ranks}")
    if any(meta["layout"] != metas[0]["layout"] or meta["frac_bits"] != metas[0]["frac_bits"]
           or meta.get("protocol", "dealer") != metas[0].get("protocol", "dealer") for meta in metas):
        raise DataError("the share files come from different models")
    protocol = metas[0].get("protocol", "dealer")
    by_rank = {meta["rank"]: shares for meta, shares in loaded}
    plain = {}
    for name in by_rank[0]:
        if protocol == "replicated":
            parts = [by_rank[rank][name] for rank in range(parties)]
            # Party i holds (x_i, x_{i+1}): its second part must be the next party's first.
            if any(not np.array_equal(parts[rank][1], parts[(rank + 1) % parties][0]) for rank in range(parties)):
                raise DataError(f"the replicated shares of {name} do not fit together: files of different runs?")
            addends = [part[0] for part in parts]
        else:
            addends = [by_rank[rank][name] for rank in range(parties)]
        total = np.zeros_like(addends[0])
        for addend in addends:
            total = total + addend  # int64 wraps modulo 2^64, as the ring does
        plain[name] = torch.from_numpy(total.astype(np.float64) / (1 << metas[0]["frac_bits"]))
    return metas[0], plain
