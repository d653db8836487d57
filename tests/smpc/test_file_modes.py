"""What `smpc train` writes for one party alone stays readable by its owner alone: model shares (--out),
checkpoints, audit logs and the privacy ledger are files of mode 0600 in folders made 0700, whatever the umask,
and never written through a symbolic link."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from smpc.files import open_private, private_directory, write_private
from tests.support.cli import run_smpc


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # umask 0: without our own modes every file would be world-readable and every folder world-writable.
    return run_smpc("train", "--max-rows", "200", *args, cwd=tmp_path, timeout=300, preexec_fn=lambda: os.umask(0))


def _modes(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]}


@pytest.mark.processes
def test_every_file_a_run_writes_is_private(tmp_path: Path) -> None:
    secure = _train(tmp_path, "--epochs", "1", "--out", "shares/model", "--checkpoint-every", "2",
                    "--checkpoint-dir", "checkpoints", "--audit", "audit")
    assert secure.returncode == 0, secure.stderr
    private = _train(tmp_path, "--mode", "fedavg", "--rounds", "1", "--local-steps", "1", "--dp-epsilon", "2",
                     "--ledger", "ledgers/ledger.json")
    assert private.returncode == 0, private.stderr
    written = {}
    for folder in ("shares", "checkpoints", "audit", "ledgers"):
        written.update({f"{folder}/{name}": mode for name, mode in _modes(tmp_path / folder).items()})
    files = [name for name in written if (tmp_path / name).is_file()]
    assert any(name.endswith(".npz") for name in files) and any(name.endswith(".jsonl") for name in files)
    assert any(name.endswith("ledger.json") for name in files) and any("committed" in name for name in files)
    assert {name: mode for name, mode in written.items() if mode & 0o077} == {}


def test_private_helpers_refuse_links_and_fix_modes(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        folder = private_directory(tmp_path / "a" / "b")
        assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700 == stat.S_IMODE(folder.stat().st_mode)
        loose = folder / "loose.txt"
        loose.write_text("x")
        os.chmod(loose, 0o666)
        with open_private(loose, "w") as handle:
            handle.write("y")
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_text() == "y"
        target = tmp_path / "elsewhere"
        target.write_text("keep")
        link = folder / "link"
        link.symlink_to(target)
        with pytest.raises(PermissionError, match="symbolic link"):
            open_private(link, "a")
        assert target.read_text() == "keep"
        write_private(folder / "atomic.bin", lambda handle: handle.write(b"data"), durable=True)
        assert stat.S_IMODE((folder / "atomic.bin").stat().st_mode) == 0o600
        assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    finally:
        os.umask(old)
