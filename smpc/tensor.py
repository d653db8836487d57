"""``SharedTensor``: a secret-shared fixed-point tensor that behaves like a torch tensor where it safely can.

It wraps this party's int64 shares and its session; it is not a torch.Tensor subclass.  Arithmetic with
another SharedTensor, a Python number or a public tensor broadcasts as torch does.  Torch functions we
support dispatch through ``__torch_function__``; any other raises torch's TypeError.  With
``requires_grad_()`` its differentiable operations record a graph for ``backward()`` (``smpc.autograd``; the
backward formulas are in ``smpc.gradients``); without, they record nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

import protocols
from fixedpoint import ring_matmul
from protocols.family import Family, Shares, join_parts, map_parts, zip_parts
from smpc import autograd, gradients
from smpc.deferred import Deferred, settle_many
from smpc.nonlinear import Nonlinear
from smpc.nonlinear import where as where  # re-exported: smpc.tensor is where the public API has it
from smpc.operands import check_multiplier, public_operand, public_tensor
from smpc.range_check import check_opened, check_shared, rescale_checked

if TYPE_CHECKING:
    from smpc.session import Session

Index = Any


class SharedTensor(Nonlinear):
    """A secret-shared tensor of one session.  Values stay secret until ``reveal``.

    It holds this party's parts of the secret (``protocols.family.Shares``: one tensor in the additive family,
    two in the replicated one); structure applies to each part, the rest goes through the session's family.
    """

    __slots__ = ("_session", "_held", "_deferred", "_bit", "_requires_grad", "_grad_fn", "_grad")

    def __init__(self, session: Session, share: torch.Tensor | Shares, *, bit: Shares | None = None,
                 deferred: Deferred | None = None) -> None:
        parts = session.family.from_local(share) if isinstance(share, torch.Tensor) else tuple(share)
        if deferred is None and (not parts or any(part.dtype != torch.int64 for part in parts)):
            raise TypeError("a share is an int64 tensor of ring elements")
        self._session = session
        self._held: Shares = parts
        # A product whose truncation waits for the value's first use (``smpc.deferred``); _parts settles it.
        self._deferred = deferred
        if deferred is not None and deferred.origin is None and session.family.settles_together:
            session._waiting.add(self)
        # Comparisons also keep their result as unscaled 0/1 shares, so that where() needs one product
        # without truncation; every other operation drops them.
        self._bit = bit
        # Autograd (smpc.autograd): set by requires_grad_() on a leaf, or with a node by a recorded operation.
        self._requires_grad = False
        self._grad_fn: autograd.Node | None = None
        self._grad: SharedTensor | None = None

    # -- metadata (public) ----------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        return self._session

    @property
    def shape(self) -> torch.Size:
        return self._like.shape

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self._like.dim()

    @property
    def ndim(self) -> int:
        return self._like.dim()

    def numel(self) -> int:
        return self._like.numel()

    def __len__(self) -> int:
        return len(self._like)

    @property
    def _like(self) -> torch.Tensor:
        """A tensor of this value's shape and device, without settling a deferred truncation."""
        return self._deferred.value if self._deferred is not None else self._held[0]

    @property
    def _parts(self) -> Shares:
        """This party's parts of the value; settles a deferred truncation first, with every other one waiting
        where the family settles them together (every party reaches this at the same point of the program, as
        every protocol step)."""
        owed = self._deferred
        if owed is not None and owed.origin is not None:  # its origin's truncation, then local
            self._held, self._deferred = owed.from_origin(owed.origin._parts), None
        elif owed is not None:
            family = self._family
            batch = self._session._waiting.take(self) if family.settles_together else [self]
            truncations = [value._deferred for value in batch if value._deferred is not None]
            for value, parts in zip(batch, settle_many(family, truncations)):
                value._held, value._deferred = parts, None
        return self._held

    @_parts.setter
    def _parts(self, parts: Shares) -> None:
        self._held, self._deferred = tuple(parts), None

    def _adopt(self, parts: Shares) -> None:
        """Take ``parts`` (settled inside a call) as this value's, and pass them back along its origins, so that
        the truncation they share is never run again."""
        owed = self._deferred
        self._held, self._deferred = tuple(parts), None
        if owed is None:
            return
        if owed.origin is None:
            self._session._waiting.drop(self)
        elif owed.origin._deferred is not None:
            owed.origin._adopt(owed.to_origin(self._held, owed.origin._like.shape))

    def _truncation_waits(self) -> bool:
        """Whether settling this value would run a truncation (its own, or an origin's still owed)."""
        owed = self._deferred
        while owed is not None and owed.origin is not None:
            owed = owed.origin._deferred
        return owed is not None

    @property
    def local_share(self) -> torch.Tensor:
        """This party's raw int64 share (a copy; its parts stacked on a new first axis when the family gives
        each party several), for audits, checkpoints and share files.  Uniformly random on its own."""
        return self._family.local(self._parts)

    def __repr__(self) -> str:
        return f"SharedTensor(shape={tuple(self.shape)}, party={self._session.rank})"

    def __bool__(self) -> bool:
        raise TypeError("a SharedTensor has no truth value: branching on a secret would reveal it")

    def __float__(self) -> float:
        raise TypeError("a SharedTensor cannot be converted to a number; call reveal() first")

    __int__ = __index__ = __float__

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("a SharedTensor cannot be converted to an array; call reveal() first")

    def settle(self) -> SharedTensor:
        """Finish a deferred truncation now (returns self).  A product's truncation waits for the value's first
        use, so that a following product by a public float shares it (``smpc.deferred``); every use settles it
        anyway, so only code that counts rounds or times an operation on its own needs this.  Every party
        must call it at the same point, as any protocol step."""
        self._parts  # noqa: B018 - the property settles
        return self

    # -- autograd (smpc.autograd) ---------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    def requires_grad_(self, requires_grad: bool = True) -> SharedTensor:
        """Mark this leaf as needing a gradient (in place, returns self), as torch."""
        if self._grad_fn is not None and not requires_grad:
            raise RuntimeError("requires_grad can only be turned off on a leaf; use detach()")
        self._requires_grad = bool(requires_grad) or self._grad_fn is not None
        return self

    @property
    def grad_fn(self) -> autograd.Node | None:
        """The recorded operation that made this tensor, or None for a leaf."""
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad(self) -> SharedTensor | None:
        """d loss / d self accumulated by ``backward`` on a leaf that requires grad (a SharedTensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value: SharedTensor | None) -> None:
        if value is not None and (not isinstance(value, SharedTensor) or value.shape != self.shape):
            raise ValueError(f"grad must be None or a SharedTensor of shape {tuple(self.shape)}")
        self._grad = value

    def detach(self) -> SharedTensor:
        """The same shared value, cut from the graph (no gradient flows through it).  A deferred truncation is
        shared with the copy: whichever is used first runs it."""
        owed = self._deferred
        if owed is not None:  # the copy shares this value's truncation
            owed = dataclasses.replace(owed, origin=self, sign=1, extra=None)
        return SharedTensor(self._session, self._held, bit=self._bit, deferred=owed)

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d self / d leaf into the ``.grad`` of every leaf that requires grad (``smpc.autograd``:
        rounds there).  ``gradient``: d loss / d self (SharedTensor or public), needed unless self has one
        element."""
        autograd.backward(self, gradient, retain_graph=retain_graph)

    def _attach(self, node: autograd.Node) -> None:
        self._grad_fn = node
        self._requires_grad = True

    def _accumulate(self, grad: SharedTensor) -> None:
        self._grad = grad if self._grad is None else self._grad + grad

    def scatter_back(self, key: Index, shape: Sequence[int]) -> SharedTensor:
        """Zeros of ``shape`` with this tensor summed into the positions ``zeros[key]`` selects (repeated
        positions add up): the adjoint of indexing.  Local and exact."""
        size = int(np.prod(shape))
        positions = torch.arange(size).reshape(tuple(shape))[key].reshape(-1)
        if positions.numel() != self.numel():
            raise ValueError(f"index selects {positions.numel()} positions for {self.numel()} values")

        def scatter(part: torch.Tensor) -> torch.Tensor:
            zeros = torch.zeros(size, dtype=torch.int64, device=part.device)
            return zeros.index_add_(0, positions.to(part.device), part.reshape(-1)).reshape(tuple(shape))

        return self._map(scatter)

    # -- data out -------------------------------------------------------------------------------------
    @overload
    def reveal(self, to: None = None) -> torch.Tensor: ...

    @overload
    def reveal(self, to: int) -> torch.Tensor | None: ...

    def reveal(self, to: int | None = None) -> torch.Tensor | None:
        """Open the value, as float64: to every party (``to=None``) or to party ``to`` only; others get None
        (the family's ``reveal``: cost there).

        With the session's ``check_range`` (``smpc.range_check``), ``RangeError`` on every party when some value
        is outside |x| < 2^int_bits: checked in the clear after a reveal to all, by a secure test before a
        reveal to one party (17 more rounds; 8 in the replicated family up to 512 elements, 18 above), so that
        every party raises alike."""
        checked = self._session.check_range
        if checked and to is not None:
            check_shared(self._session, self._parts, _REVEAL)
        opened = self._family.reveal(self._parts, to=to)
        if checked and to is None and opened is not None:
            check_opened(self._session.encoding, opened, _REVEAL)
        return None if opened is None else self._session.encoding.decode(opened)

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def _party(self) -> protocols.Party:
        return self._session.party

    @property
    def _family(self) -> Family:
        return self._session.family

    def _new(self, parts: Shares) -> SharedTensor:
        return SharedTensor(self._session, parts)

    def _owing(self, value: torch.Tensor, divisor: int | None = None) -> SharedTensor:
        """A new value floor(z / divisor) for this party's additive share ``value`` of z, |z| < 2^product_bits,
        its truncation deferred (``smpc.deferred``); divisor defaults to 2^frac_bits."""
        encoding = self._session.encoding
        deferred = Deferred(value, encoding.scale if divisor is None else divisor, encoding.product_bits)
        return SharedTensor(self._session, (), deferred=deferred)

    def _defers(self) -> bool:
        """Whether this session defers truncations: not with ``check_range`` (which tests each product before
        truncating it) nor without fractional bits (nothing to truncate)."""
        return not self._session.check_range and self._session.encoding.scale > 1

    def _map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> SharedTensor:
        return self._new(map_parts(self._parts, function))

    def _same_session(self, other: SharedTensor) -> None:
        if other._session is not self._session:
            raise ValueError("cannot combine SharedTensors of different sessions")

    def mul_unscaled(self, other: SharedTensor) -> SharedTensor:
        """x * y left at double scale (no truncation: sum exact products, then one ``rescale``)."""
        self._same_session(other)
        return self._new(self._family.mul(self._parts, other._parts, rescale=False))

    def rescale(self, divisor: int | None = None) -> SharedTensor:
        """Divide by a public positive integer (default 2^frac_bits) with one exact truncation.  With
        ``check_range``, the input (a sum of products at double scale) is first tested against the
        truncation's bound 2^product_bits (``smpc.range_check``)."""
        if self._session.check_range:
            return self._new(rescale_checked(self._session, self._parts, "the input of a rescale", divisor))
        return self._new(self._family.truncate(self._parts, divisor))

    def _shared_product(self, other: SharedTensor, product: Callable[..., Shares], name: str) -> SharedTensor:
        """The family's ``product`` (mul or matmul) of two SharedTensors, truncated; with ``check_range`` left
        unscaled, tested and then truncated (``smpc.range_check.rescale_checked``)."""
        self._same_session(other)
        if self._defers():
            return self._owing(self._family.product(self._parts, other._parts, matmul=name == "matmul"))
        if not self._session.check_range:
            return self._new(product(self._parts, other._parts))
        unscaled = product(self._parts, other._parts, rescale=False)
        return self._new(rescale_checked(self._session, unscaled, f"the product of a {name}"))

    def _truncated(self, product: Callable[[torch.Tensor], torch.Tensor], name: str) -> SharedTensor:
        """Local products of this value's parts with a public encoded float (``product`` of one part), truncated
        (tested first with ``check_range``); deferred, only the additive share is multiplied."""
        if self._defers():
            return self._owing(product(self._family.additive(self._parts)))
        products = map_parts(self._parts, product)
        if self._session.check_range:
            return self._new(rescale_checked(self._session, products, f"the product of a {name}"))
        return self._new(self._family.truncate(products))

    def _exact(self, products: Shares, name: str) -> SharedTensor:
        """Exact products with a public integer (no truncation; with ``check_range``, tested against
        |x| < 2^int_bits, since nothing else would notice a result beyond it)."""
        if self._session.check_range:
            check_shared(self._session, products, f"the product of a {name}")
        return self._new(products)

    def _call(self, function: Callable[..., Any], **options: Any) -> SharedTensor:
        """A protocol function of additive shares applied to this value (the family runs it)."""
        return self._new(self._call_shares(function, **options))

    def _call_shares(self, function: Callable[..., Any], **options: Any) -> Any:
        """The family's ``call`` of ``function`` on this value; a deferred truncation is settled inside the call
        (``Family.call_truncated``: the same values and bytes, one round fewer where the family can)."""
        owed = self._deferred
        if owed is None or not self._truncation_waits():
            return self._family.call(function, self._parts, **options)
        settled, result = self._family.call_truncated(function, owed.value, owed.divisor, owed.bound_bits,
                                                      owed.base, **options)
        self._adopt(settled)
        return result

    def _deferred_sum(self, other: SharedTensor, *, subtract: bool) -> SharedTensor | None:
        """self + other (self - other) with the one deferred truncation among them still owed (``smpc.deferred``:
        the settled one is added after it); None where neither or both are deferred, or the shape would change."""
        mine = self._truncation_waits()
        if mine == other._truncation_waits():
            return None
        if mine:  # other settles locally, if at all
            return self._owing_plus(tuple(-part for part in other._parts) if subtract else other._parts)
        return other._owing_plus(self._parts, negate=subtract)

    # -- linear operations (local) --------------------------------------------------------------------
    def __add__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            self._same_session(other)
            result = self._deferred_sum(other, subtract=False)
            if result is None:
                result = self._new(zip_parts(self._parts, other._parts, torch.add))
            return autograd.record(result, (self, other), gradients.add)
        encoded = self._session.encoding.encode(public_tensor(other))
        result = None
        if self._truncation_waits():  # x @ w - 1.5 waits too, the public term added after the truncation
            result = self._owing_plus(self._family.public(encoded))
        if result is None:
            result = self._new(self._family.add_public(self._parts, encoded))
        return autograd.record(result, (self,), gradients.passthrough)

    __radd__ = __add__

    def __neg__(self) -> SharedTensor:
        result = self._owing_plus(None, negate=True) if self._truncation_waits() else None
        if result is None:
            result = self._map(torch.neg)
        return autograd.record(result, (self,), gradients.neg)

    def _owing_plus(self, settled: Shares | None, *, negate: bool = False) -> SharedTensor | None:
        """base + self (base - self with ``negate``; -self for no base) sharing self's truncation, still owed, or
        None where it cannot wait (``Deferred.plus``)."""
        assert self._deferred is not None
        owed = (self._deferred.plus(settled, negate=negate) if settled is not None
                else self._deferred.negated())
        if owed is None:
            return None
        owed = dataclasses.replace(owed, origin=self, sign=-1 if negate or settled is None else 1, extra=settled)
        return SharedTensor(self._session, (), deferred=owed)

    neg = __neg__

    def __sub__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            self._same_session(other)
            result = self._deferred_sum(other, subtract=True)
            if result is None:
                result = self._new(zip_parts(self._parts, other._parts, torch.sub))
            return autograd.record(result, (self, other), gradients.sub)
        return self + (-public_tensor(other))

    def __rsub__(self, other: Any) -> SharedTensor:
        return (-self) + other

    # -- products -------------------------------------------------------------------------------------
    def __mul__(self, other: Any) -> SharedTensor:
        """Elementwise product: shared x shared (the family's ``mul``), shared x public float (a local
        product, then a truncation), shared x public integer (Python int, integer tensor: exact, no
        communication; ValueError for multipliers that could wrap the ring, ``operands.check_multiplier``).
        With the session's ``check_range``, every product is range-tested (``smpc.range_check``)."""
        if isinstance(other, SharedTensor):
            result = self._shared_product(other, self._family.mul, "mul")
            return autograd.record(result, (self, other), gradients.mul, self, other)
        public, is_integer = public_operand(other)
        if is_integer:
            check_multiplier(public, self._session.encoding)
            result = self._exact(map_parts(self._parts, lambda part: part * public.to(part.device)), "mul")
        else:
            encoded = self._session.encoding.encode(public)
            folded = None
            if self._deferred is not None and self._defers():
                folded = self._deferred.scaled(self._family, encoded, self._session.encoding.scale)
            if folded is not None:  # one truncation for both products (smpc.deferred)
                self._session._waiting.drop(self)
                result = SharedTensor(self._session, (), deferred=folded)
            else:
                result = self._truncated(lambda part: part * encoded.to(part.device), "mul")
        return autograd.record(result, (self,), gradients.mul_public, public)

    __rmul__ = __mul__

    def __matmul__(self, other: Any) -> SharedTensor:
        """Matrix product (vectors, matrices, batched): shared @ shared is the family's ``matmul``.  With the
        session's ``check_range``, range-tested as ``*`` is."""
        if isinstance(other, SharedTensor):
            result = self._shared_product(other, self._family.matmul, "matmul")
            return autograd.record(result, (self, other), gradients.matmul, self, other)
        return self._matmul_public(other, left=False)

    def __rmatmul__(self, other: Any) -> SharedTensor:
        return self._matmul_public(other, left=True)

    def _matmul_public(self, other: Any, *, left: bool) -> SharedTensor:
        """x @ p (or p @ x): local ring matmuls, then a truncation unless p is an integer tensor."""
        public, is_integer = public_operand(other)
        if is_integer and public.dim():
            check_multiplier(public, self._session.encoding, public.shape[-1 if left else max(-2, -public.dim())])
        ring_public = public if is_integer else self._session.encoding.encode(public)

        def product(part: torch.Tensor) -> torch.Tensor:
            matrix = ring_public.to(part.device)
            return ring_matmul(matrix, part) if left else ring_matmul(part, matrix)

        if is_integer:
            result = self._exact(map_parts(self._parts, product), "matmul")
        else:
            result = self._truncated(product, "matmul")
        rule = gradients.matmul_public_left if left else gradients.matmul_public_right
        return autograd.record(result, (self,), rule, public, self.dim())

    mul, matmul = __mul__, __matmul__

    def square(self) -> SharedTensor:
        return self * self

    # -- reductions -----------------------------------------------------------------------------------
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> SharedTensor:
        """Sum (local, exact).  The sum of values must itself stay inside the fixed-point range."""
        return autograd.record(self._sum(dim, keepdim), (self,), gradients.sum, self.shape, dim, keepdim)

    def _sum(self, dim: int | Sequence[int] | None, keepdim: bool) -> SharedTensor:
        if dim is None:
            return self._map(torch.sum)
        dims = dim if isinstance(dim, int) else tuple(dim)
        return self._map(lambda part: part.sum(dim=dims, keepdim=keepdim))

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> SharedTensor:
        """Mean: the exact sum divided by the public count with a truncation (error below one unit)."""
        total = self._sum(dim, keepdim)
        count = self.numel() // max(total.numel(), 1) if self.numel() else 0
        if count == 0:
            raise ValueError("mean of an empty SharedTensor")
        if self._party.truncation == "dealer" and self._defers() and count > 1:  # a count of 1 divides by 1
            result = self._owing(self._family.additive(total._parts), count)
        elif self._party.truncation == "dealer":
            result = self._new(self._family.truncate(total._parts, count))
        else:
            result = total * (1.0 / count)  # total is untracked: this records nothing
        return autograd.record(result, (self,), gradients.mean, self.shape, dim, keepdim, count)

    # -- shape operations (local) ---------------------------------------------------------------------
    @property
    def T(self) -> SharedTensor:
        if self.dim() > 2:
            raise ValueError(".T is defined for tensors of at most 2 dimensions; use transpose(dim0, dim1)")
        return autograd.record(self._map(torch.t), (self,), gradients.transpose, 0, -1)

    def t(self) -> SharedTensor:
        return self.T

    def transpose(self, dim0: int, dim1: int) -> SharedTensor:
        result = self._map(lambda part: part.transpose(dim0, dim1))
        return autograd.record(result, (self,), gradients.transpose, dim0, dim1)

    def permute(self, *dims: Any) -> SharedTensor:
        order = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        return autograd.record(self._map(lambda part: part.permute(*order)), (self,), gradients.permute, order)

    def reshape(self, *shape: Any) -> SharedTensor:
        return self._reshaped(lambda part: part.reshape(*shape))

    def _reshaped(self, function: Callable[[torch.Tensor], torch.Tensor]) -> SharedTensor:
        """A local operation that only changes the shape (its backward reshapes the gradient back)."""
        return autograd.record(self._map(function), (self,), gradients.reshape, self.shape)

    def view(self, *shape: Any) -> SharedTensor:
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> SharedTensor:
        return self._reshaped(lambda part: part.flatten(start_dim, end_dim))

    def unsqueeze(self, dim: int) -> SharedTensor:
        return self._reshaped(lambda part: part.unsqueeze(dim))

    def squeeze(self, dim: int | None = None) -> SharedTensor:
        return self._reshaped(lambda part: part.squeeze() if dim is None else part.squeeze(dim))

    def expand(self, *sizes: Any) -> SharedTensor:
        return autograd.record(self._map(lambda part: part.expand(*sizes)), (self,), gradients.passthrough)

    def __getitem__(self, index: Index) -> SharedTensor:
        """Basic and advanced indexing with public indices (local); its backward sums the gradient back into
        the selected positions."""
        if _contains_shared(index):
            raise TypeError("indexing with a SharedTensor would reveal the index; use a public index")
        return autograd.record(self._map(lambda part: part[index]), (self,), gradients.index, self.shape, index)

    # -- torch functions ------------------------------------------------------------------------------
    @classmethod
    def __torch_function__(
        cls, func: Callable[..., Any], types: tuple[type, ...], args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        from smpc.torch_dispatch import TORCH_FUNCTIONS  # that module builds its table from this class

        handler = TORCH_FUNCTIONS.get(func)
        if handler is None:
            return NotImplemented
        return handler(*args, **(kwargs or {}))


#: What a reveal's RangeError names.
_REVEAL = "the value of a reveal"


def bit_tensor(session: Session, bits: Shares) -> SharedTensor:
    """A shared 0.0 / 1.0 from unscaled bit shares (a comparison's or a sample's), keeping the bits so that
    ``where`` needs one product without truncation."""
    scale = session.encoding.scale
    return SharedTensor(session, map_parts(bits, lambda part: part * scale), bit=bits)


def _contains_shared(index: Index) -> bool:
    if isinstance(index, SharedTensor):
        return True
    return isinstance(index, tuple) and any(isinstance(i, SharedTensor) for i in index)


def _shared_list(tensors: Sequence[Any], name: str) -> list[SharedTensor]:
    items = list(tensors)
    if not items or not all(isinstance(t, SharedTensor) for t in items):
        raise TypeError(f"torch.{name} of SharedTensors needs a non-empty sequence of SharedTensors only")
    for t in items[1:]:
        items[0]._same_session(t)
    return items


def cat(tensors: Sequence[SharedTensor], dim: int = 0, *, out: Any = None) -> SharedTensor:
    """torch.cat of SharedTensors (``torch.cat`` on SharedTensors dispatches here): local, no communication."""
    if out is not None:
        raise TypeError("torch.cat(out=...) is not supported for SharedTensors")
    items = _shared_list(tensors, "cat")
    result = items[0]._new(join_parts([t._parts for t in items], lambda parts: torch.cat(parts, dim=dim)))
    sizes = [t.shape[dim] if t.dim() else 0 for t in items]
    return autograd.record(result, items, gradients.cat, dim, sizes)


def stack(tensors: Sequence[SharedTensor], dim: int = 0, *, out: Any = None) -> SharedTensor:
    """torch.stack of SharedTensors (``torch.stack`` dispatches here): local, no communication."""
    if out is not None:
        raise TypeError("torch.stack(out=...) is not supported for SharedTensors")
    items = _shared_list(tensors, "stack")
    result = items[0]._new(join_parts([t._parts for t in items], lambda parts: torch.stack(parts, dim=dim)))
    return autograd.record(result, items, gradients.stack, dim, len(items))
