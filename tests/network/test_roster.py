"""Key files: a key is written to the file named and nowhere else, never through a symbolic link.

The round trip, the 0600 mode and roster validation are in ``test_zmq.py``; here an attacker (or an accident) has
put a symbolic link where ``write_keypair`` is about to write, pointing at a file they can read or want clobbered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from network.roster import write_keypair

_WHAT = {".key": "secret key", ".pub": "public key"}


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
@pytest.mark.parametrize("suffix", [".key", ".pub"])
def test_write_keypair_refuses_a_symbolic_link_at_either_key_path(tmp_path: Path, suffix: str, dangling: bool,
                                                                  overwrite: bool) -> None:
    target = tmp_path / "elsewhere" / "victim.txt"
    target.parent.mkdir()
    if not dangling:
        target.write_text("precious\n")
    link = tmp_path / f"party0{suffix}"
    link.symlink_to(target)
    with pytest.raises(ValueError, match=f"party0\\{suffix} is a symbolic link; refusing to write a "
                                         f"{_WHAT[suffix]} through it"):
        write_keypair(tmp_path / "party0", overwrite=overwrite)
    assert link.is_symlink()
    if dangling:
        assert not target.exists()
    else:
        assert target.read_text() == "precious\n"
    # Refused before anything was written: no half pair is left behind.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["elsewhere", f"party0{suffix}"]


def test_overwrite_replaces_regular_key_files_in_place_with_a_private_secret(tmp_path: Path) -> None:
    first = write_keypair(tmp_path / "party0")
    (tmp_path / "party0.key").chmod(0o644)
    second = write_keypair(tmp_path / "party0", overwrite=True)
    assert second != first
    assert (tmp_path / "party0.key").stat().st_mode & 0o777 == 0o600
    assert second.decode() in (tmp_path / "party0.pub").read_text()
