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
from smpc.nn.normalization import convert_batch_norm, convert_dropout
from smpc.nn.traced import Traced, attribute, check_traceable
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session

Converter = Callable[[torch.nn.Module, "Session", "int | None", "InitDraws | None"], Module]


def from_torch(module: torch.nn.Module, session: Session, owner: int | None = None, *,
               seed: int | InitDraws | None = None) -> Module:
    """A shared model of ``module``'s architecture: torch.nn Linear, Conv1d, Conv2d, MaxPool2d, AvgPool2d,
    Flatten, ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Dropout, BatchNorm1d, BatchNorm2d, Identity,
    Sequential,
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
    check_convertible(module, joint=owner is None)
    converted = convert_module(module, session, owner, draws)
    converted.train(module.training)
    return converted


def check_convertible(module: torch.nn.Module, *, joint: bool = False) -> None:
    """Refuse (TypeError naming it) the first layer, setting, function or method without a shared counterpart,
    and with ``joint`` (no owner) a free parameter of a user's module, before anything is shared."""
    if type(module) is torch.nn.Sequential:
        for child in module:
            check_convertible(child, joint=joint)
    elif type(module) in _LAYERS:
        problem = _refusal(module)
        if problem:
            raise TypeError(f"cannot convert {type(module).__name__} with {problem}")
    elif type(module).__module__.startswith("torch.nn"):
        raise TypeError(f"cannot convert {type(module).__name__}: smpc.nn supports torch.nn "
                        f"{', '.join(sorted(cls.__name__ for cls in _LAYERS))} and Sequential")
    else:
        graph = check_traceable(module, tuple(_LAYERS))
        for node in graph.nodes:
            if node.op == "call_module":
                check_convertible(module.get_submodule(str(node.target)), joint=joint)
            elif node.op == "get_attr" and joint and isinstance(attribute(module, str(node.target)),
                                                                 torch.nn.Parameter):
                raise TypeError(f"cannot convert {type(module).__name__} without an owner: its parameter "
                                f"{node.target} lies outside torch.nn layers, so it has no joint initialisation "
                                "(pass owner=)")


def _refusal(module: torch.nn.Module) -> str | None:
    """What a supported layer type is set to that smpc does not support, or None."""
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            return f"padding={module.padding!r}, padding_mode={module.padding_mode!r} (smpc pads with zeros by number)"
        if any(d != 1 for d in module.dilation) or module.groups != 1:
            return f"dilation {module.dilation}, groups {module.groups} (smpc supports 1 and 1)"
    if isinstance(module, torch.nn.MaxPool2d) and (module.dilation not in (1, (1, 1)) or module.ceil_mode
                                                   or module.return_indices):
        return "dilation, ceil_mode or return_indices"
    if isinstance(module, torch.nn.AvgPool2d) and (module.ceil_mode or not module.count_include_pad
                                                   or module.divisor_override is not None):
        return "ceil_mode, count_include_pad=False or divisor_override"
    if isinstance(module, (torch.nn.Softmax, torch.nn.LogSoftmax)) and module.dim is None:
        return "dim=None (torch's implicit dim is deprecated)"
    return None


def convert_module(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    """One module (checked by ``check_convertible``): a layer of ``_LAYERS``, a Sequential, or a traced module
    of the user's."""
    if type(module) is torch.nn.Sequential:
        return Sequential(*(convert_module(child, session, owner, draws) for child in module))
    converter = _LAYERS.get(type(module))
    if converter is not None:
        return converter(module, session, owner, draws)
    graph = check_traceable(module, tuple(_LAYERS))
    return Traced(module, graph, lambda child: convert_module(child, session, owner, draws),
                  lambda tensor: share_parameter(session, tensor, owner))


def share_parameter(session: Session, tensor: torch.Tensor, owner: int | None) -> SharedTensor:
    """The owner's tensor shared (every party passes one of the same shape; only the owner's values count).
    A free parameter of a user's module (outside torch.nn layers) has no joint initialisation: it needs an
    owner."""
    value = tensor.detach().to(torch.float64)
    if owner is None:
        raise TypeError("a parameter outside torch.nn layers has no joint initialisation: pass owner=")
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
    cls = Conv2d if isinstance(module, torch.nn.Conv2d) else Conv1d
    kernel, stride, padding = (_ints(v) for v in (module.kernel_size, module.stride, module.padding))
    has_bias = module.bias is not None
    if owner is None:
        return cls(session, module.in_channels, module.out_channels, kernel, stride, padding, has_bias, seed=draws)
    weight = share_parameter(session, module.weight, owner)
    bias = share_parameter(session, module.bias, owner) if module.bias is not None else None
    return cls.from_shared(weight, bias, stride, padding)


def _ints(value: object) -> int | tuple[int, ...]:
    """A torch conv setting (checked numeric by ``check_convertible``) as an int or a tuple of ints."""
    assert isinstance(value, tuple)
    return tuple(int(v) for v in value)


def _pool(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    if isinstance(module, torch.nn.MaxPool2d):
        return MaxPool2d(module.kernel_size, module.stride, module.padding)
    assert isinstance(module, torch.nn.AvgPool2d)
    return AvgPool2d(module.kernel_size, module.stride, module.padding)


def _stateless(module: torch.nn.Module, session: Session, owner: int | None, draws: InitDraws | None) -> Module:
    if isinstance(module, torch.nn.Flatten):
        return Flatten(module.start_dim, module.end_dim)
    if isinstance(module, (torch.nn.Softmax, torch.nn.LogSoftmax)):
        assert module.dim is not None
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
    torch.nn.Dropout: convert_dropout,
    torch.nn.BatchNorm1d: convert_batch_norm,
    torch.nn.BatchNorm2d: convert_batch_norm,
}
