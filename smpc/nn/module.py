"""The shared module machinery: ``Parameter``, ``Module`` (forward caching, backward, parameters, state
shares, reveal), ``ModelOutput`` (an output that knows its model, for ``loss.backward()``) and ``Sequential``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from smpc.tensor import SharedTensor, cat

if TYPE_CHECKING:
    from smpc.session import Session


class Parameter:
    """A shared parameter: ``data`` (a SharedTensor, replaced by the optimizer) and ``grad`` (None or a
    SharedTensor of the same shape, accumulated by ``backward`` as torch does).  Hashable by identity."""

    __slots__ = ("data", "grad")

    def __init__(self, data: SharedTensor) -> None:
        self.data = data
        self.grad: SharedTensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def session(self) -> Session:
        return self.data.session

    def accumulate(self, grad: SharedTensor) -> None:
        """grad += new gradient (local, free)."""
        if grad.shape != self.data.shape:
            raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter of shape {tuple(self.shape)}")
        self.grad = grad if self.grad is None else self.grad + grad

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)})"


# -- modules ----------------------------------------------------------------------------------------------
class Module:
    """Base of the shared layers.  ``model(x)`` runs ``forward`` and remembers what ``backward`` needs.

    Every party must call the same methods in the same order (they are collective).
    """

    def __init__(self) -> None:
        self._recorded: ModelOutput | None = None

    # -- to override ----------------------------------------------------------------------------------
    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        """The layer's output; with ``record`` it caches what ``backward`` needs."""
        raise NotImplementedError

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        raise NotImplementedError

    def children(self) -> tuple[Module, ...]:
        return ()

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        return iter(())

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        raise NotImplementedError

    @property
    def ends_with_sigmoid(self) -> bool:
        """Whether the last operation is a Sigmoid (enables the BCE shortcut)."""
        return False

    # -- running --------------------------------------------------------------------------------------
    def __call__(self, x: SharedTensor) -> ModelOutput:
        if not isinstance(x, SharedTensor):
            raise TypeError("a shared model takes a SharedTensor input (share the data first)")
        output = ModelOutput(self, self.forward(x, record=True))
        self._recorded = output
        return output

    def backward(self, grad: SharedTensor, *, input_grad: bool = False) -> SharedTensor | None:
        """Back-propagate ``grad`` (d loss / d output of the last forward): accumulate every parameter's
        ``grad``, and return d loss / d input if ``input_grad`` (else None, saving the first layer's
        input-gradient product)."""
        if not isinstance(grad, SharedTensor):
            raise TypeError("backward takes the gradient as a SharedTensor")
        result = self._backward(grad, input_grad, from_logit=False)
        self._recorded = None
        return result

    def _backward_output(self, output: ModelOutput, grad: SharedTensor, from_logit: bool) -> None:
        if self._recorded is not output:
            raise RuntimeError("backward needs the output of this model's latest forward, once: run the model "
                               "again (a newer forward or an earlier backward consumed its cache)")
        self._backward(grad, False, from_logit)
        self._recorded = None

    def predict(self, x: SharedTensor, to: int | None = None) -> torch.Tensor | None:
        """Forward without caching, revealed to party ``to`` (float64; None on the others) or to all."""
        return self.forward(x, record=False).reveal(to=to)

    # -- parameters -----------------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) with torch's state_dict names ("0.weight", "0.bias", ...)."""
        for name, parameter in self._own_parameters():
            yield prefix + name, parameter
        for index, child in enumerate(self.children()):
            yield from child.named_parameters(f"{prefix}{index}.")

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    def state_shares(self) -> dict[str, torch.Tensor]:
        """This party's raw int64 share of every parameter, by state_dict name (for saving)."""
        return {name: parameter.data.local_share for name, parameter in self.named_parameters()}

    def load_state_shares(self, shares: dict[str, torch.Tensor]) -> None:
        """Replace every parameter by this party's saved shares (from ``state_shares`` of the same session
        layout: every party loads its own).  Local; no communication."""
        named = dict(self.named_parameters())
        if set(shares) != set(named):
            raise ValueError(f"expected shares for {sorted(named)}, got {sorted(shares)}")
        for name, parameter in named.items():
            share = torch.as_tensor(shares[name])
            try:
                loaded = SharedTensor(parameter.session, share.clone())
            except (TypeError, ValueError):
                loaded = None
            if loaded is None or loaded.shape != parameter.shape:
                raise ValueError(f"{name}: expected an int64 share of shape {tuple(parameter.shape)}")
            parameter.data = loaded
            parameter.grad = None

    def reveal(self, to: int | None = None, *, dtype: torch.dtype = torch.float32) -> torch.nn.Module | None:
        """A plain torch module of the same architecture with the opened weights, on party ``to`` (or on all
        if None); None on the others.  One round for all parameters together."""
        named = list(self.named_parameters())
        if not named:
            raise ValueError("this model has no parameters to reveal")
        flat = cat([parameter.data.reshape(-1) for _, parameter in named])
        opened = flat.reveal(to=to)
        if opened is None:
            return None
        values: dict[str, torch.Tensor] = {}
        offset = 0
        for name, parameter in named:
            count = parameter.data.numel()
            values[name] = opened[offset : offset + count].reshape(parameter.shape)
            offset += count
        return self._to_torch(values, "", dtype)


class ModelOutput(SharedTensor):
    """A model's output: a SharedTensor that knows its model, so that ``loss.backward()`` can reach it.
    Arithmetic on it gives plain SharedTensors."""

    __slots__ = ("module",)

    def __init__(self, module: Module, output: SharedTensor) -> None:
        super().__init__(output.session, output.local_share)
        self.module = module


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse, asking the first for no input gradient unless
    the caller does."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes smpc.nn modules, got {type(layer).__name__}")
        self.layers: tuple[Module, ...] = layers

    def children(self) -> tuple[Module, ...]:
        return self.layers

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    @property
    def ends_with_sigmoid(self) -> bool:
        return bool(self.layers) and self.layers[-1].ends_with_sigmoid

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        for layer in self.layers:
            x = layer.forward(x, record=record)
        return x

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        last = len(self.layers) - 1
        result: SharedTensor | None = grad
        for index in range(last, -1, -1):
            if result is None:
                raise RuntimeError("a layer gave no input gradient to the layer before it")
            result = self.layers[index]._backward(result, index > 0 or input_grad, from_logit and index == last)
        return result

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Sequential(
            *(layer._to_torch(values, f"{prefix}{index}.", dtype) for index, layer in enumerate(self.layers))
        )

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({index}): {layer!r}" for index, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


def _take(layer: Module, attribute: str) -> SharedTensor:
    """The cached forward value, cleared: backward consumes it."""
    value = getattr(layer, attribute)
    if value is None:
        raise RuntimeError(f"{type(layer).__name__}.backward without a recorded forward (run the model first; "
                           "each forward supports one backward)")
    setattr(layer, attribute, None)
    return value
