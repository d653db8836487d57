"""MPC protocols in Z_2^64: pure functions of an explicit ``Party``, in two families.

``protocols.additive``: additive shares for n >= 2 parties and a dealer process (the protocols re-exported
below); ``protocols.replicated``: 2-out-of-3 replicated shares for three parties, no dealer.  Beside them, what
both use: ``party`` (a party's transport, keys and program counter), ``family`` (the interface a session calls),
``prg`` (AES-CTR), ``observe`` (watching a party), ``setup`` (keys) and ``approx`` (approximations of non-linear
functions on additive shares, which the replicated family runs in its helper sub-session).  Nothing here keeps
global state; the network and the dealer are reached through the Party passed in.
"""

from protocols.additive import AdditiveFamily
from protocols.additive.arithmetic import matmul, matmul_public, mul, mul_public
from protocols.additive.compare import absolute, binary_and, gtz, ltz, maximum, relu, select, sign
from protocols.additive.dealer import beaver_triple, dealer_correction, matrix_triple, serve, truncation_pair
from protocols.additive.sampling import bernoulli, representable_probability
from protocols.additive.sharing import add_public, rerandomize, reveal, share, share_public
from protocols.additive.truncation import truncate
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
from protocols.replicated import ReplicatedFamily
from protocols.setup import dealer_keys, party_keys

__all__ = [
    "DEFAULT_FAILURE_BUDGET",
    "DEFAULT_GATHER_BYTES",
    "TRUNCATION_METHODS",
    "AdditiveFamily",
    "AesCtrPrg",
    "Observer",
    "OpeningTrace",
    "Party",
    "Profile",
    "ReplicatedFamily",
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
    "gtz",
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
