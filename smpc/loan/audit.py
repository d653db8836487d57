"""The audit log: every value a party learns during the job, one JSON line each."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import torch

from protocols.observe import Observer
from smpc.files import open_private


class AuditLog(Observer):
    """Every value this party learns during the job, one JSON line each: label, tag, count and the raw
    little-endian values (base64).  Masked openings only, by construction; tests check it."""

    def __init__(self, path: Path) -> None:
        self._handle = open_private(path, "w")

    def learned(self, op: str, tag: int, value: torch.Tensor) -> None:
        data = value.detach().contiguous().numpy()
        self._handle.write(json.dumps({"op": op, "tag": tag, "dtype": str(data.dtype), "count": int(data.size),
                                       "values": base64.b64encode(data.tobytes()).decode("ascii")}) + "\n")

    def close(self) -> None:
        self._handle.close()
