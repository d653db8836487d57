"""``from_torch``: a shared model of a plain torch module's architecture, with the owner's weights or joint ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from smpc.nn.init import InitDraws
from smpc.nn.layers import Linear, ReLU, Sigmoid, Tanh
from smpc.nn.module import Module, Sequential
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session


def from_torch(module: torch.nn.Module, session: Session, owner: int | None = None, *,
               seed: int | InitDraws | None = None) -> Module:
    """A shared model of ``module``'s architecture (torch.nn Linear, Sigmoid, ReLU, Tanh, Sequential).

    Every party passes a module of the same architecture.  With ``owner``, the owner's weights are shared
    (one round per parameter) and the others' weights are ignored (only their shapes are checked).  With
    ``owner=None`` the weights are drawn jointly (``Linear(init="joint")``); ``seed`` is this party's own, for
    reproducible tests only (``InitDraws``); leave it None so that the contribution comes from the OS's CSPRNG.
    """
    if owner is not None and seed is not None:
        raise ValueError("seed applies to joint initialisation (owner=None) only")
    draws = None
    if owner is None:
        draws = seed if isinstance(seed, InitDraws) else InitDraws(seed)
    return _convert(module, session, owner, draws)


def _convert(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    if isinstance(module, torch.nn.Sequential):
        return Sequential(*(_convert(child, session, owner, draws) for child in module))
    if isinstance(module, torch.nn.Linear):
        has_bias = module.bias is not None
        if owner is None:
            return Linear(session, module.in_features, module.out_features, has_bias, seed=draws)
        weight = _share_parameter(session, module.weight, owner)
        bias = _share_parameter(session, module.bias, owner) if has_bias else None
        return Linear.from_shared(weight, bias)
    activations = {torch.nn.Sigmoid: Sigmoid, torch.nn.ReLU: ReLU, torch.nn.Tanh: Tanh}
    if type(module) in activations:
        return activations[type(module)]()
    raise TypeError(f"cannot convert {type(module).__name__}: smpc.nn supports torch.nn Linear, Sigmoid, ReLU, "
                    "Tanh and Sequential (wrap custom modules' layers in torch.nn.Sequential)")


def _share_parameter(session: Session, tensor: torch.Tensor, owner: int) -> SharedTensor:
    value = tensor.detach().to(torch.float64)
    shared = session.share(value if session.rank == owner else None, owner=owner)
    if shared.shape != value.shape:
        raise ValueError(f"party {session.rank}'s architecture has a parameter of shape {tuple(value.shape)}, "
                         f"the owner's has {tuple(shared.shape)}")
    return shared
