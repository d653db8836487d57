"""Shared test set-up: hypothesis profiles (the party harness and other shared helpers are in tests/support).

Profiles: ``ci`` (default, small and fast) and ``thorough`` (many more examples); pick with
``SMPC_HYPOTHESIS_PROFILE=thorough python -m pytest``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("SMPC_HYPOTHESIS_PROFILE", "ci"))
