"""Reverse-mode autograd on SharedTensors, with torch's conventions.

    w = session.share(w0 if session.rank == 0 else None, owner=0).requires_grad_()
    loss = ((x @ w).sigmoid() - y).square().mean()
    loss.backward()                 # w.grad: a SharedTensor of w's shape
    with smpc.no_grad():            # nothing recorded inside
        w = (w - 0.1 * w.grad).detach().requires_grad_()

Each differentiable operation whose input requires a gradient (while grad mode is on) gives its result a
``Node``: the inputs, which of them need a gradient, and a backward function that computes their gradients
with shared arithmetic (``smpc.gradients``).  ``backward`` sorts the nodes topologically, runs each backward
function once with the sum of the gradients reaching its output, reduces each gradient to its input's shape
(undoing broadcasting, as torch does) and accumulates it into ``.grad`` of the leaves.  The backward functions
use forward results where that is cheaper (a sigmoid's derivative s (1 - s) from its output, ReLU's mask from
its forward comparison); they open nothing: every gradient stays shared, so a backward pass reveals nothing
the forward pass did not.  When no input requires a gradient an operation records nothing: the only cost is
the check of its inputs' ``requires_grad``.

Grad mode is thread-local, as torch's: ``smpc.no_grad()`` takes no session (torch's signature), and parties
that share a process run in threads of their own (``smpc.run_local``), so a thread-local flag is a per-party
flag; a process that hosts one party per thread never sees another party's mode.  Two sessions driven from
the same thread share it, as two torch models do.

``record(result, inputs, backward_fn, *saved)`` is the extension point for operations defined elsewhere (max
pooling's selection, fused layers): compute the forward under ``no_grad()`` (so that its inner operations
record nothing), then call ``record`` outside it; ``backward_fn(grad, needs, *saved)`` returns one gradient
(or None) per input, ``needs[i]`` saying whether input ``i`` needs one.

Online rounds of each backward (dealer family; a truncation costs 1 round there, 2 in the replicated family;
a shared x shared product with truncation 2 (3); R_f: rounds of the forward approximation f):

==========================  =====================================================================
operation                   backward rounds
==========================  =====================================================================
add, sub, neg, sum,          0 (local; broadcasting undone by local sums)
reshape/view/flatten,
(un)squeeze, expand,
transpose/T/permute,
indexing, cat, stack
x * public float, mean,      1 (one truncation; public integer factor or integer count: 0 / exact)
x / public
x * y (shared)               2 per input that needs a gradient (g y, g x)
x @ y (shared)               2 per input that needs a gradient (g y^T, x^T g)
x @ public                   1 (g p^T, truncated)
exp                          2 (g e^x, from the output)
sigmoid                      4 (s (1 - s), then g times it)
tanh                         4 (1 - t^2, then g times it)
relu, max/min (dim),         1 (a product with the forward's comparison bit, no truncation)
where (comparison)
where (public condition)     0 (exact products with the public 0/1)
where (other shared 0/1)     2 (a product with truncation)
abs                          1 (as relu: the sign bit of the forward)
reciprocal                   4 (r^2, then -g r^2)
sqrt                         R_rsqrt + 3 (0.5 g / sqrt(x) = (g rsqrt(x)) times 0.5)
rsqrt                        7 (r^2, r^3, g r^3, then times -0.5)
log                          R_reciprocal + 2 (g / x; the reciprocal of a positive x, half its comparisons)
softmax                      4 (g s, then s (g - sum(g s)))
log_softmax                  R_exp + 2 (g - exp(out) sum(g))
==========================  =====================================================================

Error of a gradient: the backward formula's products each add one truncation (2^-16) to the propagated error
of their factors; a derivative taken from an approximated output inherits that output's error (sigmoid: 3.2e-4
on s gives <= 3.2e-4 on s (1 - s); tanh: 5.8e-4 on t gives <= 1.2e-3 on 1 - t^2; exp: e^x's relative error
8.4e-4).  The battery in tests/smpc/test_autograd.py states each op's bound next to its check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from smpc.tensor import SharedTensor

#: backward_fn(grad, needs, *saved) -> one gradient (or None) per input.
BackwardFn = Callable[..., Sequence["SharedTensor | None"]]

__all__ = ["Node", "backward", "enable_grad", "is_grad_enabled", "no_grad", "record", "sum_to", "tracking"]

#: Per thread (per party when parties are threads): whether operations record nodes.
_MODE = threading.local()


def is_grad_enabled() -> bool:
    """Whether operations on SharedTensors that require a gradient record nodes in this thread."""
    return bool(getattr(_MODE, "enabled", True))


@contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    previous = is_grad_enabled()
    _MODE.enabled = enabled
    try:
        yield
    finally:
        _MODE.enabled = previous


def no_grad() -> AbstractContextManager[None]:
    """Context manager (or decorator) under which nothing is recorded in this thread, as ``torch.no_grad``."""
    return _grad_mode(False)


def enable_grad() -> AbstractContextManager[None]:
    """Context manager (or decorator) that turns recording back on inside ``no_grad``."""
    return _grad_mode(True)


class Node:
    """One recorded operation: its inputs, which of them need a gradient, and its backward function."""

    __slots__ = ("name", "inputs", "needs", "backward_fn", "saved")

    def __init__(self, name: str, inputs: tuple[SharedTensor, ...], backward_fn: BackwardFn,
                 saved: tuple[Any, ...]) -> None:
        self.name = name
        self.inputs = inputs
        self.needs = tuple(t.requires_grad for t in inputs)
        self.backward_fn: BackwardFn | None = backward_fn
        self.saved = saved

    def parents(self) -> Iterator[Node]:
        """The nodes that made this node's inputs (those that need a gradient)."""
        for tensor, need in zip(self.inputs, self.needs):
            node = tensor.grad_fn
            if need and node is not None:
                yield node

    def release(self) -> None:
        """Drop what backward needs (torch without retain_graph): a second backward raises."""
        self.backward_fn = None
        self.saved = ()

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


def tracking(inputs: Iterable[SharedTensor]) -> bool:
    """Whether an operation on ``inputs`` must record a node: some input requires a gradient and grad mode is
    on in this thread.  The cheap check every differentiable operation makes (a loop over its inputs' flags;
    the thread-local mode is read only when some input requires grad)."""
    for tensor in inputs:
        if tensor.requires_grad:
            return is_grad_enabled()
    return False


def record(result: SharedTensor, inputs: Sequence[SharedTensor], backward_fn: BackwardFn, *saved: Any,
           name: str | None = None) -> SharedTensor:
    """Make ``result`` the output of a differentiable operation of ``inputs`` (SharedTensors of the same
    session), and return it.  Records nothing unless ``tracking(inputs)``.

    ``backward_fn(grad, needs, *saved)`` gets d loss / d result (a SharedTensor of result's shape) and a tuple
    of booleans (which inputs need a gradient) and returns one gradient per input: a SharedTensor of the
    input's shape or of a shape that broadcasts to it (it is summed back), or None (zero, or not needed).  It
    runs under ``no_grad`` and must compute with shared arithmetic only (nothing revealed).  Compute
    ``result`` itself under ``no_grad()`` when it is made of SharedTensor operations, so that they record
    nothing of their own.
    """
    if not tracking(inputs):
        return result
    inputs = tuple(inputs)
    if any(result is t for t in inputs):
        raise ValueError("record needs a new result tensor, not one of the inputs")
    function_name = name if name is not None else getattr(backward_fn, "__name__", "Function")
    result._attach(Node(function_name, inputs, backward_fn, saved))
    return result


def backward(root: SharedTensor, grad: Any = None, *, retain_graph: bool = False) -> None:
    """Accumulate d root / d leaf into ``.grad`` of every leaf that requires a gradient.

    ``grad``: d loss / d root (a SharedTensor or public tensor of root's shape); may be omitted for a
    one-element root (then 1).  Rounds: the sum of the backward rounds of the recorded operations (table
    above).  The graph is freed unless ``retain_graph``.
    """
    if not root.requires_grad:
        raise RuntimeError("backward of a SharedTensor that does not require grad and has no grad_fn")
    seed = _seed(root, grad)
    if root.grad_fn is None:
        root._accumulate(seed)
        return
    pending: dict[Node, SharedTensor] = {root.grad_fn: seed}
    with no_grad():
        for node in _topological(root.grad_fn):
            output_grad = pending.pop(node, None)
            if output_grad is not None:
                _run_node(node, output_grad, pending)
            if not retain_graph:
                node.release()


def _run_node(node: Node, output_grad: SharedTensor, pending: dict[Node, SharedTensor]) -> None:
    if node.backward_fn is None:
        raise RuntimeError(f"backward through {node!r} a second time (its saved values were freed): pass "
                           "retain_graph=True to the first backward")
    grads = node.backward_fn(output_grad, node.needs, *node.saved)
    if len(grads) != len(node.inputs):
        raise RuntimeError(f"{node!r} returned {len(grads)} gradients for {len(node.inputs)} inputs")
    for tensor, need, input_grad in zip(node.inputs, node.needs, grads):
        if not need or input_grad is None:
            continue
        input_grad = sum_to(input_grad, tensor.shape)
        parent = tensor.grad_fn
        if parent is None:
            tensor._accumulate(input_grad)
        else:
            earlier = pending.get(parent)
            pending[parent] = input_grad if earlier is None else earlier + input_grad


def _seed(root: SharedTensor, grad: Any) -> SharedTensor:
    if grad is None:
        if root.numel() != 1:
            raise RuntimeError("grad can be implicitly created only for one-element outputs; pass grad=")
        return root.session.public(torch.ones(root.shape, dtype=torch.float64))
    if not hasattr(grad, "reveal"):
        grad = root.session.public(torch.as_tensor(grad, dtype=torch.float64))
    if tuple(grad.shape) != tuple(root.shape):
        raise RuntimeError(f"grad of shape {tuple(grad.shape)} for an output of shape {tuple(root.shape)}")
    return grad


def _topological(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, every node before the nodes of its inputs (iterative: deep graphs)."""
    order: list[Node] = []
    seen = {root}
    stack: list[tuple[Node, Iterator[Node]]] = [(root, root.parents())]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if parent not in seen:
                seen.add(parent)
                stack.append((parent, parent.parents()))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()
    return order


def sum_to(grad: SharedTensor, shape: torch.Size | Sequence[int]) -> SharedTensor:
    """``grad`` summed over the dimensions broadcasting added or stretched, to ``shape`` (local, exact)."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    extra = grad.dim() - len(shape)
    if extra < 0 or any(s not in (1, g) for s, g in zip(shape, grad.shape[extra:])):
        raise RuntimeError(f"a gradient of shape {tuple(grad.shape)} does not broadcast to {shape}")
    dims = tuple(range(extra)) + tuple(extra + i for i, s in enumerate(shape) if s == 1 and grad.shape[extra + i] != 1)
    return grad.sum(dims, keepdim=True).reshape(shape) if dims else grad.reshape(shape)
