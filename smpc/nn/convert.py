"""``from_torch``: a shared model of a plain torch module's architecture, with the owner's weights or joint ones.

torch.nn layers with a shared counterpart convert one to one (``_LAYERS``); ``torch.nn.Sequential`` converts
layer by layer; any other ``torch.nn.Module`` is traced with ``torch.fx`` and its graph is replayed on
SharedTensors (``smpc.nn.traced``), after every call in it was checked against what SharedTensors support: an
unsupported layer, function or method is refused at conversion, by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from smpc.nn.conv import AvgPool2d, Conv1d, Conv2d, Flatten, LogSoftmax, MaxPool2d, Softmax
from smpc.nn.init import InitDraws
from smpc.nn.layers import Linear, ReLU, Sigmoid, Tanh
from smpc.nn.module import Module, Sequential
from smpc.nn.traced import Traced, check_traceable
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session

Converter = Callable[[torch.nn.Module, "Session", "int | None", "InitDraws | None"], Module]


def from_torch(module: torch.nn.Module, session: Session, owner: int | None = None, *,
               seed: int | InitDraws | None = None) -> Module:
    """A shared model of ``module``'s architecture: torch.nn Linear, Conv1d, Conv2d, MaxPool2d, AvgPool2d,
    Flatten, ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Identity, Sequential,
    and a module of the user's whose ``forward`` uses only those and the tensor operations SharedTensor
    supports (traced with torch.fx).

    Every party passes a module of the same architecture.  With ``owner``, the owner's weights (and batch
    norm's running statistics) are shared (one round per tensor) and the others' are ignored (only their shapes
    are checked).  With ``owner=None`` the weights are drawn jointly (``Linear(init="joint")``; batch norm
    starts at torch's public 1 and 0); ``seed`` is this party's own, for reproducible tests only
    (``InitDraws``); leave it None so that the contribution comes from the OS's CSPRNG.  The converted model is
    in the torch module's mode (``train()`` or ``eval()``).
    """
    if owner is not None and seed is not None:
        raise ValueError("seed applies to joint initialisation (owner=None) only")
    draws = None
    if owner is None:
        draws = seed if isinstance(seed, InitDraws) else InitDraws(seed)
    converted = convert_module(module, session, owner, draws)
    converted.train(module.training)
    return converted


def convert_module(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    """One module: a layer of ``_LAYERS``, a Sequential, or a traced module of the user's."""
    if type(module) is torch.nn.Sequential:
        return Sequential(*(convert_module(child, session, owner, draws) for child in module))
    converter = _LAYERS.get(type(module))
    if converter is not None:
        return converter(module, session, owner, draws)
    if type(module).__module__.startswith("torch.nn"):
        raise TypeError(f"cannot convert {type(module).__name__}: smpc.nn supports torch.nn "
                        f"{', '.join(sorted(cls.__name__ for cls in _LAYERS))} and Sequential")
    graph = check_traceable(module, tuple(_LAYERS))
    return Traced(module, graph, lambda child: convert_module(child, session, owner, draws),
                  lambda tensor: share_parameter(session, tensor, owner, draws))


def share_parameter(session: Session, tensor: torch.Tensor, owner: int | None,
                    draws: InitDraws | None = None) -> SharedTensor:
    """The owner's tensor shared (every party passes one of the same shape; only the owner's values count).
    A free parameter of a user's module (outside torch.nn layers) has no joint initialisation: it needs an
    owner."""
    value = tensor.detach().to(torch.float64)
    if owner is None:
        raise TypeError("a parameter of a user's module outside torch.nn layers has no joint initialisation: "
                        "pass owner= to from_torch")
    shared = session.share(value if session.rank == owner else None, owner=owner)
    if shared.shape != value.shape:
        raise ValueError(f"party {session.rank}'s architecture has a parameter of shape {tuple(value.shape)}, "
                         f"the owner's has {tuple(shared.shape)}")
    return shared


def _linear(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    assert isinstance(module, torch.nn.Linear)
    has_bias = module.bias is not None
    if owner is None:
        return Linear(session, module.in_features, module.out_features, has_bias, seed=draws)
    weight = share_parameter(session, module.weight, owner)
    bias = share_parameter(session, module.bias, owner) if has_bias else None
    return Linear.from_shared(weight, bias)


def _conv(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    assert isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d))
    name = type(module).__name__
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise TypeError(f"cannot convert {name} with padding={module.padding!r}, padding_mode="
                        f"{module.padding_mode!r}: smpc supports numeric zero padding")
    if any(d != 1 for d in module.dilation) or module.groups != 1:
        raise TypeError(f"cannot convert {name} with dilation {module.dilation} or groups {module.groups}: smpc "
                        "supports dilation 1 and groups 1")
    cls = Conv2d if isinstance(module, torch.nn.Conv2d) else Conv1d
    one = len(module.kernel_size) == 1
    kernel, stride, padding = ((v[0] if one else tuple(v)) for v in (module.kernel_size, module.stride, module.padding))
    has_bias = module.bias is not None
    if owner is None:
        return cls(session, module.in_channels, module.out_channels, kernel, stride, padding, has_bias, seed=draws)
    weight = share_parameter(session, module.weight, owner)
    bias = share_parameter(session, module.bias, owner) if module.bias is not None else None
    return cls.from_shared(weight, bias, stride, padding)


def _pool(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    name = type(module).__name__
    if isinstance(module, torch.nn.MaxPool2d):
        if module.dilation not in (1, (1, 1)) or module.ceil_mode or module.return_indices:
            raise TypeError(f"cannot convert {name} with dilation, ceil_mode or return_indices")
        return MaxPool2d(module.kernel_size, module.stride, module.padding)
    assert isinstance(module, torch.nn.AvgPool2d)
    if module.ceil_mode or not module.count_include_pad or module.divisor_override is not None:
        raise TypeError(f"cannot convert {name} with ceil_mode, count_include_pad=False or divisor_override")
    return AvgPool2d(module.kernel_size, module.stride, module.padding)


def _stateless(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    if isinstance(module, torch.nn.Flatten):
        return Flatten(module.start_dim, module.end_dim)
    if isinstance(module, (torch.nn.Softmax, torch.nn.LogSoftmax)):
        if module.dim is None:
            raise TypeError(f"cannot convert {type(module).__name__} without dim (torch's implicit dim is deprecated)")
        return (LogSoftmax if isinstance(module, torch.nn.LogSoftmax) else Softmax)(module.dim)
    if isinstance(module, torch.nn.Identity):
        return Sequential()
    activations: dict[type, type[Module]] = {torch.nn.Sigmoid: Sigmoid, torch.nn.ReLU: ReLU, torch.nn.Tanh: Tanh}
    return activations[type(module)]()


_LAYERS: dict[type[torch.nn.Module], Converter] = {
    torch.nn.Linear: _linear,
    torch.nn.Conv1d: _conv,
    torch.nn.Conv2d: _conv,
    torch.nn.MaxPool2d: _pool,
    torch.nn.AvgPool2d: _pool,
    torch.nn.Flatten: _stateless,
    torch.nn.Softmax: _stateless,
    torch.nn.LogSoftmax: _stateless,
    torch.nn.Identity: _stateless,
    torch.nn.Sigmoid: _stateless,
    torch.nn.ReLU: _stateless,
    torch.nn.Tanh: _stateless,
}
