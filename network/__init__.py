"""Transports for smpc: tagged point-to-point messages of numpy arrays.  Imports nothing from the project."""

from network.base import WIRE_DTYPES, Transport, TransportStats, check_wire_array, node_name
from network.errors import (
    BindError,
    DuplicateTagError,
    HandshakeError,
    NetworkError,
    PeerClosedError,
    PeerLostError,
    ProtocolError,
    ReceiveTimeout,
    abort_reason,
)
from network.framing import PROTOCOL_VERSION, decode_frame
from network.local import LocalNetwork, LocalTransport
from network.roster import Roster, generate_keypair, read_public_key, read_secret_key, write_keypair
from network.zmq_notice import tell_peers_we_failed
from network.zmq_transport import ZmqTransport

__all__ = [
    "PROTOCOL_VERSION",
    "WIRE_DTYPES",
    "BindError",
    "DuplicateTagError",
    "HandshakeError",
    "LocalNetwork",
    "LocalTransport",
    "NetworkError",
    "PeerClosedError",
    "PeerLostError",
    "ProtocolError",
    "ReceiveTimeout",
    "Roster",
    "Transport",
    "TransportStats",
    "ZmqTransport",
    "abort_reason",
    "check_wire_array",
    "decode_frame",
    "generate_keypair",
    "node_name",
    "read_public_key",
    "read_secret_key",
    "tell_peers_we_failed",
    "write_keypair",
]
