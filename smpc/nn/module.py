"""The shared module machinery: ``Parameter`` (a leaf SharedTensor that requires grad), ``Module`` (parameters,
children and buffers found as torch finds them, train/eval, state dicts, reveal) and ``Sequential``.

A module's ``forward`` is written with SharedTensor operations; ``smpc.autograd`` records them whenever a
parameter or input requires a gradient, so ``loss.backward()`` reaches every parameter's ``.grad`` without a
backward written per layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from smpc import autograd
from smpc.tensor import SharedTensor, cat

if TYPE_CHECKING:
    from smpc.session import Session


class Parameter(SharedTensor):
    """A shared parameter: a leaf SharedTensor that requires a gradient, as ``torch.nn.Parameter``.

    ``grad`` is what ``backward`` accumulates (None or a SharedTensor of the same shape).  ``data`` is the same
    value detached from the graph; assigning ``data`` replaces the value in place (same object, same shape):
    optimisers update parameters that way.  Hashable by identity.
    """

    __slots__ = ()

    def __init__(self, data: SharedTensor) -> None:
        if not isinstance(data, SharedTensor):
            raise TypeError(f"a Parameter wraps a SharedTensor, not {type(data).__name__}")
        super().__init__(data.session, data._parts)
        self._requires_grad = True

    @property
    def data(self) -> SharedTensor:
        return self.detach()

    @data.setter
    def data(self, value: SharedTensor) -> None:
        if not isinstance(value, SharedTensor) or value.shape != self.shape or value.session is not self.session:
            raise ValueError(f"a parameter of shape {tuple(self.shape)} takes a SharedTensor of the same shape and "
                             "session")
        self._parts = value._parts
        self._bit = None

    def accumulate(self, grad: SharedTensor) -> None:
        """grad += new gradient (local, free)."""
        if grad.shape != self.shape:
            raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter of shape {tuple(self.shape)}")
        self._accumulate(grad)

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)})"


class Module:
    """Base of the shared layers.  ``model(x)`` runs ``forward``.

    Parameters, child modules and buffers are the attributes holding them, in assignment order (torch's
    registration without its ``__setattr__``): ``Parameter`` attributes are parameters, ``Module`` attributes
    children, and ``register_buffer`` names buffers (state that is not trained, such as running statistics).
    Every party must call the same methods in the same order (they are collective).
    """

    def __init__(self) -> None:
        self.training = True
        self._buffer_names: list[str] = []

    # -- to override ----------------------------------------------------------------------------------
    def forward(self, x: SharedTensor) -> SharedTensor:
        """The layer's output, made of SharedTensor operations (autograd records them)."""
        raise NotImplementedError

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        """The plain torch module of this layer, its state from ``values`` (opened, by state_dict name)."""
        raise NotImplementedError(f"{type(self).__name__} has no plain torch counterpart")

    # -- running --------------------------------------------------------------------------------------
    def __call__(self, x: SharedTensor) -> SharedTensor:
        if not isinstance(x, SharedTensor):
            raise TypeError("a shared model takes a SharedTensor input (share the data first)")
        return self.forward(x)

    def predict(self, x: SharedTensor, to: int | None = None) -> torch.Tensor | None:
        """Forward in eval mode with nothing recorded, revealed to party ``to`` (float64; None on the others)
        or to all.  The module's training mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            with autograd.no_grad():
                output = self(x)
        finally:
            self.train(was_training)
        return output.reveal(to=to)

    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout draws masks, batch norm uses batch statistics) for this module and its
        children, as torch."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- structure ------------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> tuple[Module, ...]:
        return tuple(child for _, child in self.named_children())

    def modules(self) -> Iterator[Module]:
        yield self
        for child in self.children():
            yield from child.modules()

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) with torch's state_dict names ("0.weight", "0.bias", ...)."""
        for name, parameter in self._own_parameters():
            yield prefix + name, parameter
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def register_buffer(self, name: str, value: SharedTensor) -> None:
        """Keep ``value`` as the attribute ``name``, part of the state dict but not a parameter."""
        if not isinstance(value, SharedTensor) or isinstance(value, Parameter):
            raise TypeError(f"buffer {name!r} must be a SharedTensor that is not a Parameter")
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        setattr(self, name, value)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, SharedTensor]]:
        for name in self._buffer_names:
            yield prefix + name, getattr(self, name)
        for child_name, child in self.named_children():
            yield from child.named_buffers(f"{prefix}{child_name}.")

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, SharedTensor]:
        """Every parameter and buffer by torch's state_dict name, as SharedTensors (detached; still shared)."""
        state: dict[str, SharedTensor] = {name: p.detach() for name, p in self.named_parameters()}
        state.update((name, b.detach()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state: Mapping[str, SharedTensor]) -> None:
        """Replace every parameter's and buffer's value by ``state``'s (SharedTensors of this session, same
        names and shapes).  Local; no communication."""
        expected = self.state_dict()
        if set(state) != set(expected):
            missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if not isinstance(value, SharedTensor) or value.shape != expected[name].shape:
                raise ValueError(f"{name}: expected a SharedTensor of shape {tuple(expected[name].shape)}")
        self._assign(dict(state))

    def _assign(self, state: dict[str, SharedTensor]) -> None:
        parameters = dict(self.named_parameters())
        for name, value in state.items():
            if name in parameters:
                parameters[name].data = value
                parameters[name].grad = None
            else:
                owner, _, attribute = name.rpartition(".")
                module = self._descendant(owner)
                module.register_buffer(attribute, value.detach())

    def _descendant(self, path: str) -> Module:
        module: Module = self
        for part in filter(None, path.split(".")):
            module = dict(module.named_children())[part]
        return module

    def state_shares(self) -> dict[str, torch.Tensor]:
        """This party's raw int64 share of every parameter and buffer, by state_dict name (for saving)."""
        return {name: value.local_share for name, value in self.state_dict().items()}

    def load_state_shares(self, shares: Mapping[str, Any]) -> None:
        """Replace every parameter and buffer by this party's saved shares (from ``state_shares`` of the same
        session layout: every party loads its own).  Local; no communication."""
        expected = self.state_dict()
        if set(shares) != set(expected):
            raise ValueError(f"expected shares for {sorted(expected)}, got {sorted(shares)}")
        loaded: dict[str, SharedTensor] = {}
        for name, current in expected.items():
            share = torch.as_tensor(shares[name])
            try:
                value: SharedTensor | None = SharedTensor(current.session, share.clone())
            except (TypeError, ValueError):
                value = None
            if value is None or value.shape != current.shape:
                raise ValueError(f"{name}: expected an int64 share of shape {tuple(current.shape)}")
            loaded[name] = value
        self._assign(loaded)

    def reveal(self, to: int | None = None, *, dtype: torch.dtype = torch.float32) -> torch.nn.Module | None:
        """A plain torch module of the same architecture with the opened weights (and buffers), on party ``to``
        (or on all if None); None on the others.  One round for all of them together."""
        named = list(self.state_dict().items())
        if not named:
            raise ValueError("this model has no parameters to reveal")
        opened = cat([value.reshape(-1) for _, value in named]).reveal(to=to)
        if opened is None:
            return None
        values: dict[str, torch.Tensor] = {}
        offset = 0
        for name, value in named:
            values[name] = opened[offset : offset + value.numel()].reshape(value.shape)
            offset += value.numel()
        plain = self._to_torch(values, "", dtype)
        plain.train(self.training)
        return plain


class Sequential(Module):
    """Layers applied in order (children named "0", "1", ..., as torch.nn.Sequential)."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes smpc.nn modules, got {type(layer).__name__}")
        self.layers: tuple[Module, ...] = layers

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for index, layer in enumerate(self.layers):
            yield str(index), layer

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def forward(self, x: SharedTensor) -> SharedTensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Sequential(
            *(layer._to_torch(values, f"{prefix}{index}.", dtype) for index, layer in enumerate(self.layers))
        )

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({index}): {layer!r}" for index, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


def session_of(module: Module) -> Session | None:
    """The session of the module's first parameter or buffer (None for a module without state)."""
    for _, value in module.state_dict().items():
        return value.session
    return None
