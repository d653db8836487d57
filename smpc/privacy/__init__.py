"""Differential privacy: the accountant, the budget ledger, randomized response, joint noise and secret sampling
on shares, and the DP-SGD step of logistic regression.

Pure bookkeeping (``accountant``, ``ledger``, ``randomized``) knows nothing of the network; ``noise``
and ``dpsgd`` compute on a session's shares.
"""

from smpc.privacy.accountant import DEFAULT_ORDERS, epsilon_spent, noise_multiplier_for, rdp_sampled_gaussian
from smpc.privacy.dpsgd import clipped_noisy_gradient, limit_safety, row_limits
from smpc.privacy.ledger import LEDGER_FORMAT, BudgetExceeded, Ledger, dataset_id
from smpc.privacy.noise import gaussian, joint_gaussian, poisson_sample
from smpc.privacy.randomized import (
    randomized_response,
    randomized_response_epsilon,
    randomized_response_estimate,
)

__all__ = [
    "DEFAULT_ORDERS",
    "LEDGER_FORMAT",
    "BudgetExceeded",
    "Ledger",
    "clipped_noisy_gradient",
    "dataset_id",
    "epsilon_spent",
    "gaussian",
    "joint_gaussian",
    "limit_safety",
    "noise_multiplier_for",
    "poisson_sample",
    "randomized_response",
    "randomized_response_epsilon",
    "randomized_response_estimate",
    "rdp_sampled_gaussian",
    "row_limits",
]
