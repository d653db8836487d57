"""smpc: secure multi-party computation over additive secret shares in Z_2^64, with a torch-shaped API.

Import this package alone; ``fixedpoint``, ``protocols`` and ``network`` are its internals.  Nothing runs at
import time.

    import smpc

    def program(session):
        x = session.share(torch.tensor([1.5, 2.0]) if session.rank == 0 else None, owner=0)
        y = session.share(torch.tensor([4.0, -1.0]) if session.rank == 1 else None, owner=1)
        return (x * y).sum().reveal()

    print(smpc.run_local(program, parties=3))
"""

from fixedpoint import FixedPoint
from network import (
    HandshakeError,
    NetworkError,
    PeerClosedError,
    PeerLostError,
    ProtocolError,
    ReceiveTimeout,
)
from protocols import TruncationBudgetError
from smpc import autograd, nn, optim
from smpc.autograd import enable_grad, no_grad
from smpc.options import SessionOptions
from smpc.range_check import RangeError
from smpc.runner import PartyError, run_local
from smpc.session import Session, SessionStats
from smpc.tensor import SharedTensor, cat, stack, where

__version__ = "0.1.0"

__all__ = [
    "FixedPoint",
    "HandshakeError",
    "NetworkError",
    "PartyError",
    "PeerClosedError",
    "PeerLostError",
    "ProtocolError",
    "RangeError",
    "ReceiveTimeout",
    "Session",
    "SessionOptions",
    "SessionStats",
    "SharedTensor",
    "TruncationBudgetError",
    "autograd",
    "cat",
    "enable_grad",
    "nn",
    "no_grad",
    "optim",
    "run_local",
    "stack",
    "where",
]
