"""Parameters every party and the dealer of one session must agree on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import protocols
from fixedpoint import FixedPoint

PROTOCOL_NAME = "smpc-additive-z2^64"


def handshake_params(n_parties: int, encoding: FixedPoint, truncation: str) -> dict[str, Any]:
    """What every node of a session must agree on; compared field by field when nodes connect."""
    return {
        "protocol": PROTOCOL_NAME,
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

    def __post_init__(self) -> None:
        if self.n_parties < 2:
            raise ValueError(f"a session needs at least 2 parties, got {self.n_parties}")
        if self.truncation not in protocols.TRUNCATION_METHODS:
            raise ValueError(f"truncation must be one of {protocols.TRUNCATION_METHODS}, got {self.truncation!r}")
        if self.truncation == "local" and self.n_parties != 2:
            raise ValueError("local-shift truncation is only correct for two parties; use truncation='dealer'")
        self.encoding  # noqa: B018 - validates frac_bits and int_bits

    @property
    def encoding(self) -> FixedPoint:
        return FixedPoint(self.frac_bits, self.int_bits)

    def handshake(self) -> dict[str, Any]:
        return handshake_params(self.n_parties, self.encoding, self.truncation)

    def names(self) -> dict[int, str]:
        names = {i: f"party {i}" for i in range(self.n_parties)}
        names[self.n_parties] = "dealer"
        return names
