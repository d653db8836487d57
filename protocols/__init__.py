"""MPC protocols over additive shares in Z_2^64: pure functions of an explicit ``Party``.

Nothing here keeps global state; the network and the dealer are reached through the Party passed in.
"""

from protocols.arithmetic import matmul, matmul_public, mul, mul_public
from protocols.compare import absolute, binary_and, ltz, maximum, relu, select, sign
from protocols.dealer import beaver_triple, dealer_correction, matrix_triple, serve, truncation_pair
from protocols.observe import Observer, OpeningTrace, Profile, RequestRecorder
from protocols.party import (
    DEFAULT_FAILURE_BUDGET,
    DEFAULT_GATHER_BYTES,
    TRUNCATION_METHODS,
    Party,
    TruncationBudgetError,
    check_device,
)
from protocols.prg import AesCtrPrg, new_key
from protocols.sampling import bernoulli, representable_probability
from protocols.setup import dealer_keys, party_keys
from protocols.sharing import add_public, rerandomize, reveal, share, share_public
from protocols.truncation import truncate

__all__ = [
    "DEFAULT_FAILURE_BUDGET",
    "DEFAULT_GATHER_BYTES",
    "TRUNCATION_METHODS",
    "AesCtrPrg",
    "Observer",
    "OpeningTrace",
    "Party",
    "Profile",
    "RequestRecorder",
    "TruncationBudgetError",
    "absolute",
    "add_public",
    "binary_and",
    "check_device",
    "beaver_triple",
    "bernoulli",
    "dealer_correction",
    "dealer_keys",
    "ltz",
    "matmul",
    "matmul_public",
    "matrix_triple",
    "maximum",
    "mul",
    "mul_public",
    "new_key",
    "party_keys",
    "relu",
    "representable_probability",
    "rerandomize",
    "reveal",
    "select",
    "serve",
    "share",
    "share_public",
    "sign",
    "truncate",
    "truncation_pair",
]
