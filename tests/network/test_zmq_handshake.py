"""ZmqTransport set-up over real TCP on 127.0.0.1: CurveZMQ with pinned keys and a ZAP handler refuse keys not on
the roster (a wrong pinned key fails the handshake), the HELLO handshake refuses another session or other
settings on both sides and another protocol version, a missing peer is named when connect times out, and nodes
set up from a roster talk.

Nodes of one test run in threads of this process (``tests.support.nodes``).
"""

from __future__ import annotations

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from network.errors import HandshakeError, ReceiveTimeout
from network.framing import PROTOCOL_VERSION, Kind, encode_header, json_payload
from network.roster import Roster, generate_keypair
from network.zmq_transport import ZmqTransport
from tests.support.nodes import (
    FAST,
    HANDSHAKE,
    SESSION,
    Cluster,
    connect_all,
    connected,
    curve_client,
    roster_document,
    timed,
)


def test_unknown_key_is_refused_within_seconds(cluster: Cluster) -> None:
    honest = cluster.node(0, 2, connect_timeout=0.5)
    stranger_keys = zmq.curve_keypair()
    stranger = cluster.node(1, 2, keys=stranger_keys, roster={0: cluster.keypair(0)[0], 1: stranger_keys[0]})
    error, seconds = timed(stranger.connect, {0: honest.endpoint})
    assert isinstance(error, HandshakeError) and "party 0 refused our key" in str(error), error
    assert seconds < 3 and stranger.closed
    assert honest.refused_connections == 1 and honest.last_refused_key == stranger_keys[0][:8].decode()
    # The honest node does not give up on a refusal (anyone can present a stranger's key) but reports it.
    with pytest.raises(HandshakeError, match=r"refused 1 connection\(s\) from a key not on the roster") as caught:
        honest.connect({1: "tcp://127.0.0.1:9"})
    assert stranger_keys[0][:8].decode() in str(caught.value) and stranger_keys[0].decode() not in str(caught.value)


def test_with_its_zap_handler_stopped_a_node_still_refuses_an_unlisted_key(cluster: Cluster) -> None:
    """libzmq admits any CURVE client when no ZAP handler answers, unless ZAP_ENFORCE_DOMAIN is set: the
    stranger's handshake must fail, and nothing it sends may reach the node."""
    victim, _ = connected(cluster, 2)
    victim._zap.close()
    stranger = zmq.Context()
    try:
        dealer = curve_client(stranger, zmq.curve_keypair(), cluster.keypair(0)[0])
        monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)
        dealer.connect(victim.endpoint)
        array = np.arange(3, dtype=np.int64)
        dealer.send_multipart([encode_header(Kind.DATA, session_id=SESSION, sender=1, seq=1, tag=1, array=array),
                               array.tobytes()])
        assert monitor.poll(30_000), "no handshake outcome"  # generous: any outcome at all ends the wait
        event = recv_monitor_message(monitor)["event"]
        assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert not victim._router.poll(500), "a message from a key not on the roster reached the node"
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)
    finally:
        stranger.destroy(linger=0)


def test_wrong_pinned_key_fails_the_curve_handshake(cluster: Cluster) -> None:
    roster = cluster.roster(2)
    confused = cluster.node(0, 2, roster={0: roster[0], 1: zmq.curve_keypair()[0]})
    other = cluster.node(1, 2, connect_timeout=3.0)
    confused_error, other_error = connect_all([confused, other])
    assert isinstance(confused_error, HandshakeError)
    assert "CURVE handshake with party 1" in str(confused_error)
    assert isinstance(other_error, HandshakeError)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"handshake": {**HANDSHAKE, "frac_bits": 12}}, ("party 1 has frac_bits=12, we have frac_bits=16",
                                                         "party 0 has frac_bits=16, we have frac_bits=12")),
        ({"handshake": {"ring_bits": 64, "frac_bits": 16}}, ("party 1 has no parties, we have parties=3",
                                                             "party 0 has parties=3, we have no parties")),
        ({"session_id": b"another-session!"}, ("party 1 is in session", "party 0 is in session")),
    ],
)
def test_mismatched_set_up_is_refused_on_both_sides(cluster: Cluster, override: dict, expected: tuple) -> None:
    first = cluster.node(0, 2)
    second = cluster.node(1, 2, **override)
    errors = connect_all([first, second])
    for error, message in zip(errors, expected):
        assert isinstance(error, HandshakeError), error
        assert message in str(error)


def test_connect_times_out_naming_the_missing_peer(cluster: Cluster) -> None:
    lonely = cluster.node(0, 2, connect_timeout=0.5)
    with pytest.raises(HandshakeError, match="party 1 at tcp://127.0.0.1:9 .its HELLO missing"):
        lonely.connect({1: "tcp://127.0.0.1:9"})



def test_a_peer_speaking_another_protocol_version_is_refused_at_set_up(cluster: Cluster) -> None:
    victim = cluster.node(0, 2)
    public, secret = cluster.keypair(1)
    impostor = zmq.Context()
    try:
        server, client = impostor.socket(zmq.ROUTER), impostor.socket(zmq.DEALER)
        server.curve_server, server.curve_publickey, server.curve_secretkey = True, public, secret
        client.curve_publickey, client.curve_secretkey = public, secret
        client.curve_serverkey = cluster.keypair(0)[0]
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.connect(victim.endpoint)
        hello = json_payload({"rank": 1, "session": SESSION.hex(), "handshake": HANDSHAKE})
        header = bytearray(encode_header(Kind.HELLO, session_id=SESSION, sender=1, seq=0, tag=0, array=hello))
        header[4] = PROTOCOL_VERSION - 1
        client.send_multipart([bytes(header), hello.tobytes()])
        error, seconds = timed(victim.connect, {1: f"tcp://127.0.0.1:{port}"})
        assert isinstance(error, HandshakeError), error
        assert (f"bad frame from party 1: protocol version {PROTOCOL_VERSION - 1}, we speak {PROTOCOL_VERSION}"
                in str(error))
        assert seconds < 5 and victim.closed
    finally:
        impostor.destroy(linger=0)



def test_nodes_set_up_from_a_roster_talk(cluster: Cluster) -> None:
    keys = {node: generate_keypair() for node in range(3)}
    data = roster_document(2)
    for node, entry in enumerate([*data["parties"], data["dealer"]]):
        entry["public_key"] = keys[node][0].decode()
    roster = Roster.from_dict(data)
    everyone = [
        ZmqTransport(node, public_key=keys[node][0], secret_key=keys[node][1], roster_keys=roster.public_keys,
                     session_id=roster.session_id, handshake={"frac_bits": roster.frac_bits}, names=roster.names,
                     **{**FAST, "recv_timeout": 0.3})
        for node in range(3)
    ]
    cluster.transports.extend(everyone)
    assert connect_all(everyone) == [None] * 3
    everyone[roster.dealer_id].send(0, 1, np.arange(3))
    assert everyone[0].recv(roster.dealer_id, 1).tolist() == [0, 1, 2]
    with pytest.raises(ReceiveTimeout, match=r"no message from dealer for triple \(tag 2\)"):
        everyone[1].recv(roster.dealer_id, 2, op="triple")
