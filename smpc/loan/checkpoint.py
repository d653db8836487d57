"""Checkpoints of a training run: each party's own shares and counters, written atomically, committed only
when every party has written its part.

Layout under the checkpoint directory: ``step-<8 digits>/party<rank>.npz`` (this party's int64 shares and a JSON
``meta``) and ``step-<8 digits>/party<rank>.committed`` (written after every party said it has written that
step).  Every file is written to a temporary name, flushed, fsynced and renamed, and the directory fsynced,
so after a crash a file is either whole or absent; files are mode 0600 in folders made 0700
(``smpc.files``).  A party only ever reads and deletes its own files.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from smpc.files import write_private

#: Checkpoint file format version.
FORMAT = 1
#: Committed checkpoints each party keeps (the newest two: a crash during a commit leaves the previous one
#: committed everywhere).
KEEP = 2


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be resumed from; the message says what to fix."""


def step_dir(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}"


def write(directory: Path, step: int, rank: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write this party's part of checkpoint ``step`` (not yet committed)."""
    path = step_dir(directory, step) / f"party{rank}.npz"
    document = json.dumps({"format": FORMAT, "step": step, "rank": rank, **meta})
    contents: dict[str, Any] = {"meta": np.array(document), **arrays}
    return write_private(path, lambda handle: np.savez(handle, **contents), durable=True)


def commit(directory: Path, step: int, rank: int) -> None:
    """Mark ``step`` committed for this party (call once every party has written it), then drop this party's
    files of older committed steps beyond the newest ``KEEP``."""
    write_private(step_dir(directory, step) / f"party{rank}.committed", lambda handle: handle.write(b"ok\n"),
                  durable=True)
    for old in committed_steps(directory, rank)[:-KEEP]:
        folder = step_dir(directory, old)
        for name in (f"party{rank}.npz", f"party{rank}.committed"):
            (folder / name).unlink(missing_ok=True)
        # Parties on one host share the folder: the last one out removes it (rmdir refuses a non-empty one).
        with contextlib.suppress(OSError):
            folder.rmdir()


def committed_steps(directory: Path, rank: int) -> list[int]:
    """Steps this party has committed (with its file present), oldest first."""
    steps = []
    for folder in Path(directory).glob("step-*"):
        try:
            step = int(folder.name.split("-", 1)[1])
        except ValueError:
            continue
        if (folder / f"party{rank}.committed").is_file() and (folder / f"party{rank}.npz").is_file():
            steps.append(step)
    return sorted(steps)


def load(directory: Path, step: int, rank: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """This party's arrays and meta of committed checkpoint ``step``."""
    path = step_dir(directory, step) / f"party{rank}.npz"
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {name: archive[name] for name in archive.files if name != "meta"}
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    if meta.get("format") != FORMAT or meta.get("rank") != rank or meta.get("step") != step:
        raise CheckpointError(f"{path}: written by another version, party or step")
    return arrays, meta
