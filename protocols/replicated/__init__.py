"""The replicated family: 2-out-of-3 replicated shares for exactly three parties, no dealer (``family``)."""

from protocols.replicated.family import ReplicatedFamily, replicated_keys

__all__ = ["ReplicatedFamily", "replicated_keys"]
