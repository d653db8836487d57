"""Nodes of one test on 127.0.0.1: their keys and roster, ZmqTransports that connect in threads of this
process (each transport has its own ZeroMQ context), and everything they made closed at teardown.

The ``cluster`` fixture of tests/network/conftest.py hands each test a fresh ``Cluster``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from network.roster import generate_keypair
from network.zmq_transport import ZmqTransport

SESSION = b"test-session-id!"
HANDSHAKE = {"ring_bits": 64, "frac_bits": 16, "parties": 3}
FAST = {"recv_timeout": 10.0, "connect_timeout": 10.0, "close_timeout": 2.0}


class Cluster:
    """Keys and transports of one test; everything it made is aborted and closed at teardown."""

    def __init__(self) -> None:
        self.transports: list[ZmqTransport] = []
        self.keys: dict[int, tuple[bytes, bytes]] = {}

    def keypair(self, node: int) -> tuple[bytes, bytes]:
        if node not in self.keys:
            self.keys[node] = zmq.curve_keypair()
        return self.keys[node]

    def roster(self, n: int) -> dict[int, bytes]:
        return {node: self.keypair(node)[0] for node in range(n)}

    def node(self, rank: int, n: int, *, keys: tuple[bytes, bytes] | None = None,
             roster: dict[int, bytes] | None = None, **options: Any) -> ZmqTransport:
        public, secret = keys or self.keypair(rank)
        settings = {"session_id": SESSION, "handshake": HANDSHAKE, **FAST, **options}
        transport = ZmqTransport(
            rank, public_key=public, secret_key=secret, roster_keys=roster or self.roster(n),
            names={node: f"party {node}" for node in range(n)}, **settings,
        )
        self.transports.append(transport)
        return transport

    def nodes(self, n: int, **options: Any) -> list[ZmqTransport]:
        return [self.node(rank, n, **options) for rank in range(n)]

    def close(self) -> None:
        for transport in self.transports:
            transport.close(abort=True)
        assert not [thread for thread in threading.enumerate() if thread.name == "smpc-zap"], "a ZAP thread leaked"


def in_threads(tasks: list[Callable[[], Any]], timeout: float = 30.0) -> list[Any]:
    """Run each task in its own thread; its result, or the exception it raised, in task order."""
    results: list[Any] = [None] * len(tasks)

    def run(index: int) -> None:
        try:
            results[index] = tasks[index]()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a node hung"
    return results


def addresses_for(transport: ZmqTransport, everyone: list[ZmqTransport]) -> dict[int, str]:
    return {other.rank: other.endpoint for other in everyone if other is not transport}


def connect_all(everyone: list[ZmqTransport]) -> list[Any]:
    return in_threads([lambda t=t: t.connect(addresses_for(t, everyone)) for t in everyone])


def connected(cluster: Cluster, n: int, **options: Any) -> list[ZmqTransport]:
    everyone = cluster.nodes(n, **options)
    assert connect_all(everyone) == [None] * n
    return everyone


def curve_client(context: zmq.Context, keys: tuple[bytes, bytes], server_key: bytes) -> zmq.Socket:
    """A DEALER socket of ``context`` that speaks CurveZMQ with ``keys`` to the node whose public key is
    ``server_key`` (linger 0, not yet connected): an outsider, or a forger holding a party's keys."""
    client = context.socket(zmq.DEALER)
    client.linger = 0
    client.curve_publickey, client.curve_secretkey = keys
    client.curve_serverkey = server_key
    return client


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[BaseException | None, float]:
    """The exception ``function(*args, **kwargs)`` raised (None if none) and how long it took."""
    started = time.monotonic()
    try:
        function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - handed back to the test
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def roster_document(n: int = 3) -> dict[str, Any]:
    """A valid roster document (as in roster.json) of ``n`` parties and a dealer, each with a fresh public key."""
    nodes = [{"address": f"tcp://127.0.0.1:{7000 + node}", "public_key": generate_keypair()[0].decode()}
             for node in range(n + 1)]
    return {"session": "study-7", "frac_bits": 16, "parties": nodes[:n], "dealer": nodes[n]}
