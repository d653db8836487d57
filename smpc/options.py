"""Parameters every party (and the dealer, in the dealer family) of one session must agree on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import protocols
from fixedpoint import FixedPoint

#: The wire name of each protocol family, compared in the handshake.
PROTOCOL_NAMES = {"dealer": "smpc-additive-z2^64", "replicated": "smpc-replicated-z2^64"}


def handshake_params(n_parties: int, encoding: FixedPoint, truncation: str,
                     gather_bytes: int | None = protocols.DEFAULT_GATHER_BYTES,
                     protocol: str = "dealer", check_range: bool = False) -> dict[str, Any]:
    """What every node of a session must agree on; compared field by field when nodes connect.
    ``check_range`` adds range tests (and their messages) to the protocol, so it is agreed too."""
    return {
        "check_range": bool(check_range),
        "gather_bytes": -1 if gather_bytes is None else int(gather_bytes),
        "protocol": PROTOCOL_NAMES[protocol],
        "ring_bits": 64,
        "frac_bits": encoding.frac_bits,
        "int_bits": encoding.int_bits,
        "parties": n_parties,
        "truncation": truncation,
    }


@dataclass(frozen=True)
class SessionOptions:
    """Parameters every party and the dealer of one session share."""

    n_parties: int
    frac_bits: int = 16
    int_bits: int = 15
    truncation: str = "dealer"
    failure_budget: float = protocols.DEFAULT_FAILURE_BUDGET
    recv_timeout: float = 120.0
    connect_timeout: float = 60.0
    #: Openings of at least this many bytes go reduce-scatter/all-gather (two rounds, 2(n-1)/n of the value
    #: sent per party) instead of one broadcast round ((n-1) of it); None: always broadcast.
    gather_bytes: int | None = protocols.DEFAULT_GATHER_BYTES
    #: Where this party keeps shares and does local arithmetic ("cpu", "cuda", "cuda:1", ...); not agreed.
    device: str = "cpu"
    #: The protocol family: "dealer" (additive shares, a dealer process, n >= 2) or "replicated" (2-out-of-3
    #: replicated shares, exactly three parties, no dealer).
    protocol: str = "dealer"
    #: Follow every product and reveal with a range test that raises ``smpc.RangeError`` instead of letting a
    #: value outside |x| < 2^int_bits wrap silently (``smpc.range_check``; costs in its functions).  It changes
    #: the messages of the protocol, so every node agrees on it in the handshake, the dealer included.
    #: ``smpc train`` leaves it off: it checks its inputs against the schema's scales instead.
    check_range: bool = False

    def __post_init__(self) -> None:
        if self.n_parties < 2:
            raise ValueError(f"a session needs at least 2 parties, got {self.n_parties}")
        if self.truncation not in protocols.TRUNCATION_METHODS:
            raise ValueError(f"truncation must be one of {protocols.TRUNCATION_METHODS}, got {self.truncation!r}")
        if self.truncation == "local" and self.n_parties != 2:
            raise ValueError("local-shift truncation is only correct for two parties; use truncation='dealer'")
        if self.protocol not in PROTOCOL_NAMES:
            raise ValueError(f"protocol must be one of {tuple(PROTOCOL_NAMES)}, got {self.protocol!r}")
        if self.protocol == "replicated" and self.n_parties != 3:
            raise ValueError(f"the replicated protocol is for exactly 3 parties, not {self.n_parties}; use "
                             "protocol='dealer' for other counts")
        if self.protocol == "replicated" and self.truncation != "dealer":
            raise ValueError("the replicated protocol truncates exactly (its own way); leave truncation='dealer'")
        if self.gather_bytes is not None and self.gather_bytes < 0:
            raise ValueError(f"gather_bytes must be None or >= 0, got {self.gather_bytes}")
        protocols.check_device(self.device)
        self.encoding  # noqa: B018 - validates frac_bits and int_bits

    @property
    def encoding(self) -> FixedPoint:
        return FixedPoint(self.frac_bits, self.int_bits)

    @property
    def has_dealer(self) -> bool:
        """Whether the session has a dealer process (node ``n_parties``)."""
        return self.protocol == "dealer"

    @property
    def n_nodes(self) -> int:
        """Processes of the session: the parties, plus the dealer in the dealer family."""
        return self.n_parties + (1 if self.has_dealer else 0)

    def handshake(self) -> dict[str, Any]:
        return handshake_params(self.n_parties, self.encoding, self.truncation, self.gather_bytes, self.protocol,
                                self.check_range)

    def names(self) -> dict[int, str]:
        names = {i: f"party {i}" for i in range(self.n_parties)}
        if self.has_dealer:
            names[self.n_parties] = "dealer"
        return names
