"""Transports for smpc: tagged point-to-point messages of numpy arrays.  Imports nothing from the project."""

from network.base import WIRE_DTYPES, Transport, TransportStats, check_wire_array, node_name
from network.errors import (
    HandshakeError,
    NetworkError,
    PeerClosedError,
    PeerLostError,
    ProtocolError,
    ReceiveTimeout,
)
from network.local import LocalNetwork, LocalTransport

__all__ = [
    "WIRE_DTYPES",
    "HandshakeError",
    "LocalNetwork",
    "LocalTransport",
    "NetworkError",
    "PeerClosedError",
    "PeerLostError",
    "ProtocolError",
    "ReceiveTimeout",
    "Transport",
    "TransportStats",
    "check_wire_array",
    "node_name",
]
