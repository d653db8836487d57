"""A network model: predicted time of an op on a real link, from its measured compute, rounds and bytes.

    predicted = local compute + rounds x RTT + bytes sent per party x 8 / bandwidth

Local compute is the slowest party's measured time minus the time it spent blocked on its peers.  The model
assumes every round is on the critical path (true for our protocols: each round needs the previous one's
output), full-duplex links, and that encryption keeps up with the link (CurveZMQ does about 400 MB/s per
core here, above a 100 Mbit/s WAN, below a 10 Gbit/s LAN's 1.25 GB/s: on such a LAN the model is optimistic
by up to bytes / encryption throughput).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Link:
    rtt_s: float
    bits_per_s: float


LINKS = {"lan": Link(rtt_s=0.2e-3, bits_per_s=10e9), "wan": Link(rtt_s=40e-3, bits_per_s=100e6)}


def predict(compute_s: float, rounds: int, bytes_per_party: int, link: Link) -> float:
    """Seconds the op would take on ``link`` (see the module docstring)."""
    return compute_s + rounds * link.rtt_s + bytes_per_party * 8 / link.bits_per_s


def calibrate_encryption(nbytes: int = 8 << 20, repeats: int = 5) -> float:
    """Bytes per second one CurveZMQ link carries on this machine (encrypt + send + decrypt), on 127.0.0.1."""
    with _curve_pair() as (server, client):
        message = bytes(nbytes)
        client.send(message)
        server.recv()
        start = time.perf_counter()
        for _ in range(repeats):
            client.send(message, copy=False)
            server.recv(copy=False)
        return nbytes * repeats / (time.perf_counter() - start)


def calibrate_round_trip(repeats: int = 2000) -> float:
    """Mean seconds of one 8-byte ping-pong over a CurveZMQ link on 127.0.0.1 in one process: the
    floor under our per-round overhead (libzmq's I/O thread and CURVE, no Python protocol code between)."""
    with _curve_pair() as (server, client):
        message = bytes(8)
        for _ in range(200):
            client.send(message)
            server.send(server.recv())
            client.recv()
        start = time.perf_counter()
        for _ in range(repeats):
            client.send(message)
            server.send(server.recv())
            client.recv()
        return (time.perf_counter() - start) / repeats


@contextlib.contextmanager
def _curve_pair() -> Iterator[tuple[Any, Any]]:
    """A connected CURVE server and client PAIR on 127.0.0.1, closed afterwards."""
    import zmq

    context = zmq.Context()
    server, client = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    try:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        server.curve_server = True
        server.curve_secretkey, server.curve_publickey = server_secret, server_public
        client.curve_serverkey = server_public
        client.curve_publickey, client.curve_secretkey = client_public, client_secret
        for sock in (server, client):
            sock.linger = 0
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.connect(f"tcp://127.0.0.1:{port}")
        yield server, client
    finally:
        server.close()
        client.close()
        context.term()
