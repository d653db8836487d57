"""A peer that sends a share of the wrong dtype, size or shape is refused by the protocol layer, by name, within
seconds.

The wire-level refusals are in ``test_zmq_handshake.py`` (unknown key, other protocol version) and
``test_zmq_hostile.py`` (replayed, out-of-sequence, other session, undecodable dtype or shape, oversized); here the
frame is well formed and the transport accepts it, and it is ``Party._expect`` that notices the share does not
fit the operation it was sent for.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

import smpc
from tests.support.harness import run_parties

#: What the honest party opens: 4 ring elements.
SHARE = torch.arange(4, dtype=torch.int64)

#: What the cheating party sends instead, and what the honest party must say about it.
WRONG_SHARES = {
    "dtype": (np.arange(4, dtype=np.float64), "party 1 sent torch.float64 for open, expected torch.int64"),
    "size": (np.arange(5, dtype=np.int64), "party 1 sent 5 elements for open, expected 4"),
    "shape": (np.arange(4, dtype=np.int64).reshape(2, 2), "party 1 sent shape (2, 2) for open, expected (4,)"),
}


def _open_with_a_cheat(wrong: str, session: smpc.Session) -> str:
    """Party 0 opens ``SHARE`` honestly; party 1 sends ``WRONG_SHARES[wrong]`` under the same tag through its
    transport directly, then takes party 0's share so that it finishes normally."""
    party = session.party
    if session.rank == 0:
        party.open(SHARE.clone(), "open")
        return "accepted the wrong share"
    tag = party.next_tag()
    party.transport.send(0, tag, WRONG_SHARES[wrong][0])
    party.recv(0, tag, "open")
    return "cheated"


@pytest.mark.parametrize(
    ("wrong", "transport"),
    [("dtype", "inproc"), ("size", "inproc"), ("shape", "inproc"),
     pytest.param("size", "zmq", marks=pytest.mark.processes)],
)
def test_a_share_of_the_wrong_dtype_size_or_shape_is_refused_naming_the_sender(wrong: str, transport: str) -> None:
    """PartyError from party 0 naming party 1, the operation, and what was expected.  Over ZeroMQ (one case: each
    party and the dealer is a fresh process importing torch, seconds each) start-up is included in the bound."""
    started = time.monotonic()
    with pytest.raises(smpc.PartyError) as caught:
        run_parties(functools.partial(_open_with_a_cheat, wrong), 2, transport=transport, recv_timeout=20.0,
                    timeout=60.0)
    seconds = time.monotonic() - started
    assert caught.value.rank == 0 and caught.value.kind == "ValueError"
    assert str(caught.value).startswith(f"party 0 failed: ValueError: {WRONG_SHARES[wrong][1]}"), caught.value
    assert seconds < (10 if transport == "inproc" else 30)
