"""A user's ``torch.nn.Module`` on shares: its ``forward`` traced once with ``torch.fx`` and replayed on
SharedTensors.

``check_traceable`` traces the module (torch.nn layers are leaves; the user's own submodules and Sequentials
are traced through) and checks every node before anything is shared: a layer without a shared counterpart, a
torch function SharedTensor does not implement, or a method it lacks is refused with its name.  ``Traced``
holds the converted layers and the module's own parameters under torch's state_dict names, and its forward
runs the graph's nodes in order: layers, torch functions (through ``SharedTensor.__torch_function__`` or the
shared counterparts in ``_FUNCTIONS``), operators and methods.  Autograd records what they record.

Limits: the graph is fixed at tracing (no control flow on values: torch.fx refuses it, and a secret could not
steer it anyway; ``F.dropout(x, p, self.training)`` keeps the mode the module had when converted); one input;
tensor constants and buffers of the user's module stay public; every shape is public, as everywhere in smpc.
"""

from __future__ import annotations

import copy
import operator
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.fx

from smpc.nn import functional as F
from smpc.nn.module import Module, Parameter
from smpc.nn.normalization import dropout
from smpc.tensor import SharedTensor
from smpc.torch_dispatch import supports_torch_function


def _linear(x: SharedTensor, weight: Any, bias: Any = None) -> SharedTensor:
    output = x @ weight.T
    return output if bias is None else output + bias


#: torch.nn.functional calls with a shared counterpart that SharedTensor does not dispatch itself.
_FUNCTIONS: Mapping[Callable[..., Any], Callable[..., Any]] = {
    torch.nn.functional.conv2d: F.conv2d,
    torch.nn.functional.conv1d: F.conv1d,
    torch.nn.functional.max_pool2d: F.max_pool2d,
    torch.nn.functional.avg_pool2d: F.avg_pool2d,
    torch.nn.functional.linear: _linear,
    torch.nn.functional.dropout: lambda x, p=0.5, training=True, inplace=False: dropout(x, p, training),
    torch.sigmoid: lambda x: x.sigmoid(),
    torch.tanh: lambda x: x.tanh(),
    torch.nn.functional.sigmoid: lambda x: x.sigmoid(),
    torch.nn.functional.tanh: lambda x: x.tanh(),
}

#: Python operators and builtins fx records as functions.
_OPERATORS = frozenset({operator.add, operator.sub, operator.mul, operator.truediv, operator.matmul, operator.neg,
                        operator.getitem, operator.pos, getattr})


def _name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def _tracer(leaves: tuple[type, ...]) -> torch.fx.Tracer:
    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
            if type(m) is torch.nn.Sequential:
                return False
            return type(m) in leaves or type(m).__module__.startswith("torch.nn")

    return Tracer()


#: torch.fx patches torch.nn.Module.__call__ process-wide while it traces, so two parties that are threads of
#: one process (``run_local``) must not trace at the same time.  A lock, not state: it holds no value.
_TRACING = threading.Lock()


def trace(module: torch.nn.Module, leaves: tuple[type, ...]) -> torch.fx.Graph:
    try:
        with _TRACING:
            return _tracer(leaves).trace(module)
    except (torch.fx.proxy.TraceError, TypeError, NotImplementedError) as error:
        raise TypeError(f"cannot convert {type(module).__name__}: torch.fx cannot trace its forward ({error}); "
                        "a forward whose steps depend on values cannot run on secrets") from error


def check_traceable(module: torch.nn.Module, leaves: tuple[type, ...]) -> torch.fx.Graph:
    """The module's graph, after refusing (TypeError naming it) the first unsupported layer, function or
    method, or a second input."""
    graph = trace(module, leaves)
    owner = type(module).__name__
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    if len(inputs) != 1:
        raise TypeError(f"cannot convert {owner}: its forward takes {len(inputs)} inputs; smpc.nn modules take one")
    for node in graph.nodes:
        problem = _unsupported(node, module, leaves)
        if problem:
            raise TypeError(f"cannot convert {owner}: its forward uses {problem}, which smpc does not support on "
                            "shares")
    return graph


def _unsupported(node: torch.fx.Node, module: torch.nn.Module, leaves: tuple[type, ...]) -> str | None:
    if node.op == "call_module":
        layer = module.get_submodule(str(node.target))
        return None if type(layer) in leaves else f"the layer torch.nn.{type(layer).__name__} ({node.target})"
    if node.op == "call_function":
        target = node.target
        if target in _FUNCTIONS or target in _OPERATORS or supports_torch_function(target):
            if target is getattr and not _is_publicattribute(node.args[1]):
                return f"the attribute .{node.args[1]}"
            return None
        return f"the function {_name(target)}"
    if node.op == "call_method":
        name = str(node.target)
        return None if _is_publicattribute(name) else f"the method .{name}()"
    return None


def _is_publicattribute(name: object) -> bool:
    return isinstance(name, str) and not name.startswith("_") and hasattr(SharedTensor, name)


class _Tree(Module):
    """A level of the module's attribute tree: converted layers and free parameters by attribute name."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, Module | Parameter] = {}

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, entry in self.entries.items():
            if isinstance(entry, Module):
                yield name, entry

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, entry in self.entries.items():
            if isinstance(entry, Parameter):
                yield name, entry

    def place(self, path: str, entry: Module | Parameter) -> None:
        head, _, rest = path.partition(".")
        if not rest:
            self.entries[head] = entry
            return
        child = self.entries.setdefault(head, _Tree())
        assert isinstance(child, _Tree)
        child.place(rest, entry)

    def find(self, path: str) -> Module | Parameter:
        head, _, rest = path.partition(".")
        entry = self.entries[head]
        if not rest:
            return entry
        assert isinstance(entry, _Tree)
        return entry.find(rest)


class Traced(_Tree):
    """A user's module converted through its torch.fx graph (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, graph: torch.fx.Graph, convert: Callable[[torch.nn.Module], Module],
                 share: Callable[[torch.Tensor], SharedTensor]) -> None:
        """``graph``: the module's graph from ``check_traceable``; ``convert`` converts a layer, ``share`` shares a
        free parameter."""
        super().__init__()
        self._graph = graph
        self._name = type(module).__name__
        self._template = _copy(module)
        self._constants: dict[str, Any] = {}
        for node in self._graph.nodes:
            if node.op == "call_module":
                self.place(str(node.target), convert(module.get_submodule(str(node.target))))
        for node in self._graph.nodes:
            target = str(node.target)
            if node.op != "get_attr" or self._converted(target) is not None:
                continue
            value = attribute(module, target)
            if isinstance(value, torch.nn.Parameter):
                self.place(target, Parameter(share(value)))
            else:
                self._constants[target] = value

    def _converted(self, path: str) -> Any:
        """The shared attribute at ``path`` if a converted layer already holds it (a layer's weight read
        directly), else None."""
        entry: Any = self
        for part in path.split("."):
            entry = entry.entries.get(part) if isinstance(entry, _Tree) else getattr(entry, part, None)
            if entry is None:
                return None
        return entry if isinstance(entry, SharedTensor) else None

    def forward(self, x: SharedTensor) -> SharedTensor:
        values: dict[torch.fx.Node, Any] = {}

        def load(argument: Any) -> Any:
            return torch.fx.node.map_arg(argument, lambda node: values[node])

        for node in self._graph.nodes:
            if node.op == "placeholder":
                values[node] = x
            elif node.op == "get_attr":
                target = str(node.target)
                values[node] = self._constants[target] if target in self._constants else self._converted(target)
            elif node.op == "call_module":
                layer = self.find(str(node.target))
                assert isinstance(layer, Module)
                values[node] = layer(*load(node.args))
            elif node.op == "call_function":
                function = _FUNCTIONS.get(node.target, node.target)
                values[node] = function(*load(node.args), **load(node.kwargs))
            elif node.op == "call_method":
                subject, *rest = load(node.args)
                values[node] = getattr(subject, str(node.target))(*rest, **load(node.kwargs))
            elif node.op == "output":
                result: SharedTensor = load(node.args[0])
                return result
        raise RuntimeError(f"the traced graph of {self._name} has no output")

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        plain = _copy(self._template).to(dtype)
        state = {name[len(prefix):]: value for name, value in values.items() if name.startswith(prefix)}
        missing = set(state) - set(plain.state_dict())
        if missing:
            raise RuntimeError(f"{self._name}'s state has no {sorted(missing)}")
        plain.load_state_dict(state, strict=False)
        return plain

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): {entry!r}" for name, entry in self.entries.items())
        return f"Traced[{self._name}]({inner}\n)"


def _copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy, never while another thread traces (tracing patches what copying walks)."""
    with _TRACING:
        return copy.deepcopy(module)


def attribute(module: torch.nn.Module, path: str) -> Any:
    value: Any = module
    for part in path.split("."):
        value = getattr(value, part)
    return value
