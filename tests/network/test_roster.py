"""Key files and rosters: a key pair round-trips with a private secret file, a key is written to the file named
and nowhere else (never through a symbolic link: an attacker, or an accident, may have put one where
``write_keypair`` is about to write, pointing at a file they can read or want clobbered), and a roster loads,
saves and derives its ids, or says what to fix.

Nodes set up from a roster are in ``test_zmq_handshake.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from network.roster import Roster, read_public_key, read_secret_key, write_keypair
from tests.support.nodes import roster_document

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


def test_keypair_files_round_trip_with_a_private_secret_file(tmp_path: Path) -> None:
    public = write_keypair(tmp_path / "party0")
    assert (tmp_path / "party0.key").stat().st_mode & 0o777 == 0o600
    assert read_secret_key(tmp_path / "party0.key")[0] == public == read_public_key(tmp_path / "party0.pub")
    assert "secret" not in (tmp_path / "party0.pub").read_text().replace("secret key", "")
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "party0")
    assert write_keypair(tmp_path / "party0", overwrite=True) != public
    with pytest.raises(ValueError, match="no secret-key"):
        read_secret_key(tmp_path / "party0.pub")
    with pytest.raises(ValueError, match="does not exist"):
        read_secret_key(tmp_path / "missing.key")
    (tmp_path / "bad.pub").write_text('public-key = "tooshort"\n')
    with pytest.raises(ValueError, match="not a 40-character Z85 key"):
        read_public_key(tmp_path / "bad.pub")


def test_roster_loads_saves_and_derives_ids(tmp_path: Path) -> None:
    data = roster_document()
    data["parties"][0]["bind"] = "tcp://0.0.0.0:7000"
    (tmp_path / "roster.json").write_text(json.dumps(data))
    roster = Roster.load(tmp_path / "roster.json")
    assert (roster.n_parties, roster.dealer_id, roster.frac_bits) == (3, 3, 16)
    assert roster.addresses[3] == "tcp://127.0.0.1:7003" and roster.bind_addresses[0] == "tcp://0.0.0.0:7000"
    assert roster.public_keys[1] == data["parties"][1]["public_key"].encode()
    assert roster.names == {0: "party 0", 1: "party 1", 2: "party 2", 3: "dealer"}
    assert len(roster.session_id) == 16 and roster.session_id != Roster.from_dict({**data, "session": "x"}).session_id
    roster.save(tmp_path / "copy.json")
    assert Roster.load(tmp_path / "copy.json") == roster


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["parties"].pop() and d["parties"].pop(), "at least 2 parties"),
        (lambda d: d["parties"][2].update(public_key="abc"),
         "roster entry for party 2: public_key is not a 40-character Z85 key"),
        (lambda d: d["dealer"].update(address=d["parties"][0]["address"]), "party 0 and dealer have the same address"),
        (lambda d: d["dealer"].update(public_key=d["parties"][1]["public_key"]), "same public_key"),
        (lambda d: d["parties"][1].update(address="127.0.0.1:7001"), "party 1: address must look like tcp://host:port"),
        (lambda d: d["parties"][1].update(address="tcp://*:7001"), "not the wildcard"),
        (lambda d: d["parties"][1].update(address="tcp://h:70000"), "port in 1..65535"),
        (lambda d: d.update(session=""), "session"),
        (lambda d: d.update(frac_bits=64), "frac_bits"),
        (lambda d: d.update(extra=1), "unknown fields"),
    ],
)
def test_roster_validation_says_what_to_fix(tmp_path: Path, edit: Callable[[dict], Any], message: str) -> None:
    data = roster_document()
    edit(data)
    (tmp_path / "roster.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        Roster.load(tmp_path / "roster.json")
