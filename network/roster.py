"""Key files and the roster: who takes part in a session, where it listens, and which public key it must present.

Key files are small text files (the same ``public-key = "..."`` lines as ZeroMQ's certificate format, which they
can also read): ``PREFIX.key`` holds both keys and is created with mode 0600, ``PREFIX.pub`` the public key only.

A roster is JSON::

    {"session": "bank-study-7", "frac_bits": 16,
     "parties": [{"address": "tcp://10.0.0.1:5555", "public_key": "<40 Z85 chars>", "bind": "tcp://0.0.0.0:5555"},
                 ...],
     "dealer": {"address": "tcp://10.0.0.9:5555", "public_key": "<40 Z85 chars>"}}

Parties are nodes ``0 .. n-1`` in list order; the dealer, if the roster has one, is node ``n`` (a roster without
a ``"dealer"`` entry describes a session without a dealer process).  ``bind`` is optional (default: the
address), for hosts that must listen on another interface than the one peers dial.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85

_KEY_LINE = re.compile(r'^\s*(public-key|secret-key)\s*=\s*"([^"]*)"\s*$')
_ENDPOINT = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.*-]+):([0-9]{1,5})$")
_SESSION_PREFIX = b"smpc session id v1:"


def check_z85_key(key: bytes | str, what: str) -> bytes:
    """``key`` as Z85 bytes, or ValueError ``"<what> is not a 40-character Z85 key"``."""
    try:
        raw = key.encode("ascii") if isinstance(key, str) else bytes(key)
        if len(raw) == 40 and len(z85.decode(raw)) == 32:
            return raw
    except (ValueError, KeyError, TypeError, struct.error):
        pass
    raise ValueError(f"{what} is not a 40-character Z85 key")


# ------------------------------------------------------------------------------------------------ key files


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh CurveZMQ keypair ``(public, secret)``, both Z85 bytes."""
    return zmq.curve_keypair()


def write_keypair(path_prefix: str | os.PathLike[str], *, overwrite: bool = False) -> bytes:
    """Generate a keypair, write ``PREFIX.key`` (mode 0600, both keys) and ``PREFIX.pub``; return the public key.

    Refuses (FileExistsError) to replace existing files unless ``overwrite``: losing a secret key locks a node
    out of every roster that lists it.  Refuses (ValueError) a symbolic link at either path, even with
    ``overwrite``: the key would land in whatever file the link points at.
    """
    prefix = Path(path_prefix)
    secret_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    # Checked up front so that a refusal leaves no half-written pair; O_NOFOLLOW below closes the race.
    for path, what in ((secret_path, "secret key"), (public_path, "public key")):
        if path.is_symlink():
            raise ValueError(_symlink_refusal(path, what))
    if not overwrite and public_path.exists():
        raise FileExistsError(f"{public_path} exists; pass overwrite=True to replace it")
    public, secret = generate_keypair()
    _write_key_file(secret_path, _key_text("secret key: keep it private", public, secret), "secret key",
                    overwrite=overwrite, mode=0o600)
    _write_key_file(public_path, _key_text("public key: give it to whoever writes the roster", public, None),
                    "public key", overwrite=overwrite, mode=None)
    return public


def _key_text(comment: str, public: bytes, secret: bytes | None) -> str:
    """The text of a key file."""
    lines = [f"#   smpc CurveZMQ {comment}", "curve", f'    public-key = "{public.decode("ascii")}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write_key_file(path: Path, text: str, what: str, *, overwrite: bool, mode: int | None) -> None:
    """Write ``text`` to ``path`` itself, never through a symbolic link; ``mode`` (if given) whatever the umask.

    O_NOFOLLOW makes the open fail on a link at ``path``; O_EXCL (not overwriting) never follows one either.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600 if mode is not None else 0o644)
    except FileExistsError as error:
        if path.is_symlink():
            raise ValueError(_symlink_refusal(path, what)) from error
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from error
    except OSError as error:
        # Linux and macOS say ELOOP, FreeBSD EMLINK, when O_NOFOLLOW meets a link.
        if error.errno in (errno.ELOOP, errno.EMLINK):
            raise ValueError(_symlink_refusal(path, what)) from error
        raise
    with os.fdopen(descriptor, "w") as handle:
        if mode is not None:
            os.fchmod(handle.fileno(), mode)
        handle.write(text)


def _symlink_refusal(path: Path, what: str) -> str:
    """Why we will not write a key file at ``path``."""
    return f"{path} is a symbolic link; refusing to write a {what} through it"


def read_secret_key(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key`` file; ValueError if either is missing, malformed or they do not match."""
    keys = _read_key_file(path)
    if "secret-key" not in keys:
        raise ValueError(f"{path} has no secret-key line; is it a .pub file?")
    public = check_z85_key(keys.get("public-key", ""), f"public-key in {path}")
    secret = check_z85_key(keys["secret-key"], f"secret-key in {path}")
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{path}: the public key does not belong to the secret key")
    return public, secret


def read_public_key(path: str | os.PathLike[str]) -> bytes:
    """The public key from a ``.pub`` (or ``.key``) file; ValueError if missing or malformed."""
    keys = _read_key_file(path)
    if "public-key" not in keys:
        raise ValueError(f"{path} has no public-key line")
    return check_z85_key(keys["public-key"], f"public-key in {path}")


def _read_key_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``name = "value"`` key lines of a key file; ValueError (not OSError) if it cannot be read."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError as error:
        raise ValueError(f"key file {path} does not exist; create it with `smpc keygen`") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read key file {path}: {error.__class__.__name__}") from error
    keys: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys


# --------------------------------------------------------------------------------------------------- roster


@dataclass(frozen=True)
class RosterNode:
    """One node of a roster: the endpoint peers dial, its public key, and optionally where it binds."""

    address: str
    public_key: bytes
    bind: str | None = None

    @property
    def bind_address(self) -> str:
        """Where this node listens: ``bind`` if given, else its address."""
        return self.bind or self.address


@dataclass(frozen=True)
class Roster:
    """Who is in a session: parties ``0 .. n-1``, the dealer ``n`` (None: no dealer), endpoints and keys."""

    session: str
    frac_bits: int
    parties: tuple[RosterNode, ...]
    dealer: RosterNode | None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def n_parties(self) -> int:
        """Number of computing parties."""
        return len(self.parties)

    @property
    def dealer_id(self) -> int:
        """Node id of the dealer (= number of parties)."""
        return len(self.parties)

    @property
    def nodes(self) -> dict[int, RosterNode]:
        """Every node by id, parties then the dealer (if any)."""
        nodes = dict(enumerate(self.parties))
        if self.dealer is not None:
            nodes[self.dealer_id] = self.dealer
        return nodes

    @property
    def addresses(self) -> dict[int, str]:
        """Node id -> endpoint peers dial."""
        return {node: entry.address for node, entry in self.nodes.items()}

    @property
    def bind_addresses(self) -> dict[int, str]:
        """Node id -> endpoint the node binds."""
        return {node: entry.bind_address for node, entry in self.nodes.items()}

    @property
    def public_keys(self) -> dict[int, bytes]:
        """Node id -> Z85 public key."""
        return {node: entry.public_key for node, entry in self.nodes.items()}

    @property
    def names(self) -> dict[int, str]:
        """Node id -> how errors name it ("party 0", ..., "dealer")."""
        names = {node: f"party {node}" for node in range(self.n_parties)}
        if self.dealer is not None:
            names[self.dealer_id] = "dealer"
        return names

    @property
    def session_id(self) -> bytes:
        """16-byte session id: SHA-256 of the session name (domain-separated), truncated."""
        return hashlib.sha256(_SESSION_PREFIX + self.session.encode("utf-8")).digest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Roster:
        """Build and validate a roster from parsed JSON; ValueError says what to fix."""
        if not isinstance(data, Mapping):
            raise ValueError("roster must be a JSON object")
        unknown = set(data) - {"session", "frac_bits", "parties", "dealer"}
        if unknown:
            raise ValueError(f"roster has unknown fields {sorted(unknown)}")
        parties = data.get("parties")
        if not isinstance(parties, list):
            raise ValueError('roster needs "parties": a list of {"address", "public_key"} objects')
        return cls(
            session=data.get("session"),  # type: ignore[arg-type]  # checked in __post_init__
            frac_bits=data.get("frac_bits", 16),
            parties=tuple(_node_from_dict(entry, f"party {index}") for index, entry in enumerate(parties)),
            dealer=_node_from_dict(data["dealer"], "dealer") if data.get("dealer") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``from_dict`` reads."""
        return {
            "session": self.session,
            "frac_bits": self.frac_bits,
            "parties": [_node_to_dict(node) for node in self.parties],
            **({"dealer": _node_to_dict(self.dealer)} if self.dealer is not None else {}),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Roster:
        """Read and validate a roster file; ValueError (naming the file) on anything wrong."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ValueError(f"roster file {path} does not exist") from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read roster file {path}: {error}") from error
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the roster as indented JSON (it holds public keys only)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _node_from_dict(entry: Any, who: str) -> RosterNode:
    """A RosterNode from its JSON object; ValueError naming the entry."""
    if not isinstance(entry, Mapping):
        raise ValueError(f'roster entry for {who} must be an object with "address" and "public_key"')
    unknown = set(entry) - {"address", "public_key", "bind"}
    if unknown:
        raise ValueError(f"roster entry for {who} has unknown fields {sorted(unknown)}")
    key = entry.get("public_key")
    if not isinstance(key, str):
        raise ValueError(f"roster entry for {who}: public_key is not a 40-character Z85 key")
    return RosterNode(
        address=entry.get("address"),  # type: ignore[arg-type]  # checked by _validate
        public_key=check_z85_key(key, f"roster entry for {who}: public_key"),
        bind=entry.get("bind"),
    )


def _node_to_dict(node: RosterNode) -> dict[str, str]:
    """The JSON object of one roster node."""
    entry = {"address": node.address, "public_key": node.public_key.decode("ascii")}
    if node.bind is not None:
        entry["bind"] = node.bind
    return entry


def _validate(roster: Roster) -> None:
    """ValueError unless the roster is usable: a name, >= 2 parties, valid distinct endpoints and keys."""
    if not isinstance(roster.session, str) or not roster.session:
        raise ValueError('roster needs "session": a non-empty name shared by every node')
    if isinstance(roster.frac_bits, bool) or not isinstance(roster.frac_bits, int) or not 0 <= roster.frac_bits < 64:
        raise ValueError(f'"frac_bits" must be an integer in [0, 63], got {roster.frac_bits!r}')
    if len(roster.parties) < 2:
        raise ValueError(f"roster needs at least 2 parties, has {len(roster.parties)}")
    names = roster.names
    for node, entry in roster.nodes.items():
        _check_endpoint(entry.address, f"roster entry for {names[node]}: address", dialable=True)
        if entry.bind is not None:
            _check_endpoint(entry.bind, f"roster entry for {names[node]}: bind", dialable=False)
        check_z85_key(entry.public_key, f"roster entry for {names[node]}: public_key")
    _check_distinct(roster.addresses, names, "address")
    _check_distinct(roster.public_keys, names, "public_key")


def _check_endpoint(endpoint: Any, what: str, *, dialable: bool) -> None:
    """ValueError unless ``endpoint`` is ``tcp://host:port`` with a port in 1..65535 (and no ``*`` if dialable)."""
    match = _ENDPOINT.match(endpoint) if isinstance(endpoint, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"{what} must look like tcp://host:port with a port in 1..65535, got {endpoint!r}")
    if dialable and match.group(1) in ("*", "0.0.0.0", "[::]"):
        raise ValueError(f"{what} must be an address peers can dial, not the wildcard {match.group(1)!r}")


def _check_distinct(values: Mapping[int, Any], names: Mapping[int, str], field_name: str) -> None:
    """ValueError naming the first two nodes that share a value."""
    seen: dict[Any, int] = {}
    for node, value in values.items():
        if value in seen:
            raise ValueError(f"{names[seen[value]]} and {names[node]} have the same {field_name}; each needs its own")
        seen[value] = node
