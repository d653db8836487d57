"""Files only their owner may read: model shares, checkpoints, audit logs and the privacy ledger.

In a local run every party writes into one folder, so files readable by other local users would let any of them
add the parties' shares.  Everything written here is created mode 0600 in folders created mode 0700, whatever
the umask, and never through a symbolic link.  Folders that already exist keep their mode (they are the user's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def private_directory(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder, creating it and every missing parent with mode 0700.  Returns the path."""
    directory = Path(path)
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            os.mkdir(candidate, DIRECTORY_MODE)
        except FileExistsError:  # another party of a local run made it first
            continue
        os.chmod(candidate, DIRECTORY_MODE)  # the umask may have removed bits; it cannot have added any
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a folder")
    return directory


def open_private(path: str | os.PathLike[str], mode: str = "w") -> IO:
    """Open ``path`` for writing ("w", "wb") or appending ("a", "ab", "a+b"), created mode 0600 (an existing
    file is set to 0600 too), refusing a symbolic link at ``path``."""
    if mode not in ("w", "wb", "a", "ab", "a+b"):
        raise ValueError(f"open_private writes or appends, not mode {mode!r}")
    flags = os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    flags |= os.O_RDWR if "+" in mode else os.O_WRONLY
    target = Path(path)
    private_directory(target.parent)
    try:
        descriptor = os.open(target, flags, FILE_MODE)
    except OSError as error:
        if target.is_symlink():
            raise PermissionError(f"{target} is a symbolic link; refusing to write private data through it") from None
        raise error
    os.fchmod(descriptor, FILE_MODE)
    if "b" in mode:
        return os.fdopen(descriptor, mode)
    return os.fdopen(descriptor, mode, encoding="utf-8")


def write_private(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *, durable: bool = False) -> Path:
    """Atomically replace ``path`` by what ``write(handle)`` writes: a temporary file (mode 0600) in the same
    folder, flushed (and with ``durable``, fsynced, as is the folder after the rename), then renamed over
    ``path``, so the file is whole or absent after a crash.  Returns the path."""
    target = Path(path)
    private_directory(target.parent)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open_private(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        descriptor = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return target
