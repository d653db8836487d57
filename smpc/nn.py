"""Shared neural networks: counterparts of torch.nn ``Linear``, ``Sigmoid``, ``ReLU``, ``Tanh``, ``Sequential``,
``BCELoss`` and ``MSELoss`` whose parameters stay secret-shared, and ``from_torch`` to convert a plain module.

    model = smpc.nn.from_torch(torch_model, session, owner=0)   # every party passes the same architecture
    criterion = smpc.nn.BCELoss()
    optimizer = smpc.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in batches:                                        # SharedTensors
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    plain = model.reveal(to=0)                                    # torch module on party 0, None elsewhere

Gradients are derived by hand, layer by layer, not traced.  A traced autograd over SharedTensors would record
every product and replay its adjoint, paying a Beaver round trip for each node and keeping every
intermediate; the closed forms below need fewer products (a sigmoid's derivative is s (1 - s) from its output,
not the adjoint of its polynomial approximation), and the BCE + Sigmoid pair collapses to (p - y) / N with no
log and no division.  Each layer's ``forward`` caches exactly what its ``backward`` needs; ``backward``
consumes the cache (a second backward without a new forward raises, as torch does without retain_graph).

Online rounds (R_sigmoid, R_tanh: those of ``SharedTensor.sigmoid`` and ``.tanh``, 13 each at the time of
writing; products with truncation cost 2 rounds):

==================  ======================  ============================================================
layer               forward                 backward
==================  ======================  ============================================================
Linear              2 (one matmul)          2 (grad_W = g^T x) + 2 if the input gradient is needed
                                            (grad_x = g W, after grad_W); grad_b = sum g is local
ReLU                9 (mask = [x > 0], 8;   1 (where(mask, g, 0): a bit product, no truncation); relu()
                    where(mask, x, 0), 1)   costs the same 9 rounds but drops the mask
Sigmoid             R_sigmoid               4 (g * (s (1 - s))), or 0 after BCELoss (shortcut below)
Tanh                R_tanh                  4 (g * (1 - t^2))
BCELoss + Sigmoid   --                      1 ((p - y) / N: one exact division)
MSELoss             --                      1 (2 (out - y) / N: one exact division)
==================  ======================  ============================================================

So a logistic-regression step (Linear(d, 1), Sigmoid, BCELoss, SGD) costs 2 + R_sigmoid forward, 3 backward
(the first layer needs no input gradient) and 1 for ``SGD.step``: 19 rounds.

Weights come from one owner (``from_torch(module, session, owner=r)``: every party passes a module of the same
architecture, only the owner's values are used) or are drawn jointly so that nobody knows them
(``from_torch(module, session, seed=...)`` or ``Linear(session, d_in, d_out, init="joint")``).

Fixed-point limits apply to every intermediate: |v| < 2^int_bits, products included (x W^T, g^T x summed over
the batch).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterator

import torch

from protocols.prg import AesCtrPrg, new_key
from smpc.tensor import SharedTensor

if TYPE_CHECKING:
    from smpc.session import Session

__all__ = [
    "BCELoss",
    "InitDraws",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "ModelOutput",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "from_torch",
    "joint_init_contribution",
]


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
    def session(self) -> "Session":
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

    def children(self) -> tuple["Module", ...]:
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
    def __call__(self, x: SharedTensor) -> "ModelOutput":
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

    def _backward_output(self, output: "ModelOutput", grad: SharedTensor, from_logit: bool) -> None:
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
            if share.dtype != torch.int64 or share.shape != parameter.shape:
                raise ValueError(f"{name}: expected an int64 share of shape {tuple(parameter.shape)}")
            parameter.data = SharedTensor(parameter.session, share.clone())
            parameter.grad = None

    def reveal(self, to: int | None = None, *, dtype: torch.dtype = torch.float32) -> torch.nn.Module | None:
        """A plain torch module of the same architecture with the opened weights, on party ``to`` (or on all
        if None); None on the others.  One round for all parameters together."""
        named = list(self.named_parameters())
        if not named:
            raise ValueError("this model has no parameters to reveal")
        flat = torch.cat([parameter.data.reshape(-1) for _, parameter in named])
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


class Linear(Module):
    """y = x W^T + b with a shared W (out_features x in_features) and b (out_features).

    ``init="joint"`` (default): nobody knows the start weights.  Every party draws its own contribution
    uniform(-B/sqrt(n), B/sqrt(n)) with B = 1/sqrt(in_features) (torch's default bound) and shares it; W and b
    are the sums.  The sum has torch's variance B^2/3 (its shape tends to a normal of that variance, within
    +-B sqrt(n) instead of +-B).  Each contribution comes from AES-CTR keyed by the OS's CSPRNG (``InitDraws``),
    so nobody can predict the sum; ``seed`` (an int, or an ``InitDraws`` several layers draw from) makes this
    party's contribution reproducible, for tests only: parties must not share or publish seeds.  Cost: n rounds
    (one sharing per party, weight and bias together).
    ``init="zeros"``: public zeros, no communication (fine for convex models such as logistic regression).
    """

    def __init__(self, session: "Session", in_features: int, out_features: int, bias: bool = True, *,
                 init: str = "joint", seed: int | InitDraws | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        shapes = [(out_features, in_features)] + ([(out_features,)] if bias else [])
        if init == "joint":
            values = _joint_values(session, shapes, in_features, seed)
        elif init == "zeros":
            if seed is not None:
                raise ValueError("seed only applies to init='joint'")
            values = [session.public(torch.zeros(shape, dtype=torch.float64)) for shape in shapes]
        else:
            raise ValueError(f"init must be 'joint' or 'zeros', got {init!r}")
        self.weight = Parameter(values[0])
        self.bias = Parameter(values[1]) if bias else None
        self._input: SharedTensor | None = None

    @classmethod
    def from_shared(cls, weight: SharedTensor, bias: SharedTensor | None) -> "Linear":
        """A layer around given shared weights (W: out x in, b: out)."""
        if weight.dim() != 2 or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
            raise ValueError("Linear needs a 2-d weight (out x in) and a bias of shape (out,)")
        out_features, in_features = weight.shape
        # Public zeros cost nothing; they are replaced at once.
        layer = cls(weight.session, in_features, out_features, bias is not None, init="zeros")
        layer.weight = Parameter(weight)
        layer.bias = None if bias is None else Parameter(bias)
        return layer

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        yield "weight", self.weight
        if self.bias is not None:
            yield "bias", self.bias

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        """x @ W^T + b: one matmul (2 rounds)."""
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of shape {tuple(x.shape)}")
        if record:
            self._input = x
        output = x @ self.weight.data.T
        return output if self.bias is None else output + self.bias.data

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        """grad_W = g^T x (2 rounds), grad_b = sum_rows g (local), grad_x = g W (2 rounds, only if asked)."""
        x = _take(self, "_input")
        g = grad.reshape(-1, self.out_features)
        self.weight.accumulate(g.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self.bias.accumulate(g.sum(0))
        if not input_grad:
            return None
        return (g @ self.weight.data).reshape(x.shape)

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        layer = torch.nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(values[prefix + "weight"])
            if self.bias is not None:
                layer.bias.copy_(values[prefix + "bias"])
        return layer

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None})"


class Sigmoid(Module):
    """s = sigmoid(x) (``SharedTensor.sigmoid``, max abs error 1e-3).  Backward g s (1 - s): 4 rounds; after
    BCELoss, skipped (the loss hands the logit gradient (p - y) / N directly)."""

    def __init__(self) -> None:
        super().__init__()
        self._output: SharedTensor | None = None

    @property
    def ends_with_sigmoid(self) -> bool:
        return True

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        output = x.sigmoid()
        if record:
            self._output = output
        return output

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        s = _take(self, "_output")
        if from_logit:
            return grad
        return grad * (s * (1.0 - s)) if input_grad else None

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Sigmoid()

    def __repr__(self) -> str:
        return "Sigmoid()"


class Tanh(Module):
    """t = tanh(x) (``SharedTensor.tanh``, max abs error 1e-3).  Backward g (1 - t^2): 4 rounds."""

    def __init__(self) -> None:
        super().__init__()
        self._output: SharedTensor | None = None

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        output = x.tanh()
        if record:
            self._output = output
        return output

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        t = _take(self, "_output")
        return grad * (1.0 - t * t) if input_grad else None

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Tanh()

    def __repr__(self) -> str:
        return "Tanh()"


class ReLU(Module):
    """max(x, 0) as where([x > 0], x, 0): 9 rounds, exactly what relu() costs, but the comparison bit is kept
    so backward is where(mask, g, 0): 1 round (a bit product needs no truncation).  Exact; the gradient at 0
    is 0, as torch's."""

    def __init__(self) -> None:
        super().__init__()
        self._mask: SharedTensor | None = None

    def forward(self, x: SharedTensor, *, record: bool = True) -> SharedTensor:
        if not record:
            return x.relu()
        mask = x > 0
        self._mask = mask
        return _select(mask, x)

    def _backward(self, grad: SharedTensor, input_grad: bool, from_logit: bool) -> SharedTensor | None:
        mask = _take(self, "_mask")
        return _select(mask, grad) if input_grad else None

    def _to_torch(self, values: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.ReLU()

    def __repr__(self) -> str:
        return "ReLU()"


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


# -- losses -----------------------------------------------------------------------------------------------
class _Criterion:
    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def __call__(self, output: SharedTensor, target: Any) -> "Loss":
        if not isinstance(output, SharedTensor):
            raise TypeError("the output must be a SharedTensor")
        shape = target.shape if isinstance(target, (SharedTensor, torch.Tensor)) else torch.as_tensor(target).shape
        if tuple(shape) != tuple(output.shape):
            raise ValueError(f"target shape {tuple(shape)} differs from output shape {tuple(output.shape)}")
        return Loss(self, output, target)

    def _count(self, output: SharedTensor) -> int:
        return output.numel() if self.reduction == "mean" else 1

    def _reduce(self, elementwise: SharedTensor) -> SharedTensor:
        return elementwise.mean() if self.reduction == "mean" else elementwise.sum()

    def _grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        raise NotImplementedError

    def _value(self, output: SharedTensor, target: Any) -> SharedTensor:
        raise NotImplementedError


class MSELoss(_Criterion):
    """mean((out - y)^2) (or the sum).  Gradient 2 (out - y) / N: 1 round (exact division)."""

    def _grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        return (output - target) * 2 / self._count(output)

    def _value(self, output: SharedTensor, target: Any) -> SharedTensor:
        difference = output - target
        return self._reduce(difference * difference)


class BCELoss(_Criterion):
    """Binary cross-entropy of probabilities p (a model ending in Sigmoid) and targets y in [0, 1].

    ``loss.backward()`` hands the final Sigmoid's input the gradient (p - y) / N (1 round), the closed form of
    d BCE(sigmoid(z), y) / dz: no log, no division.  The gradient with respect to p itself would need
    1 / (p (1 - p)), so a model that does not end in Sigmoid is refused.  ``loss.value()`` needs
    ``SharedTensor.log``; log arguments are clamped to at least 2^-frac_bits (torch clamps each log at -100).
    """

    def _grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        raise NotImplementedError(
            "the BCE gradient with respect to probabilities needs a division by p (1 - p); end the model in "
            "Sigmoid and call loss.backward(), which uses the logit gradient (p - y) / N"
        )

    def logit_grad(self, output: SharedTensor, target: Any) -> SharedTensor:
        """(p - y) / N: the gradient with respect to the logit z where p = sigmoid(z).  1 round."""
        return (output - target) / self._count(output)

    def _value(self, output: SharedTensor, target: Any) -> SharedTensor:
        if not callable(getattr(SharedTensor, "log", None)):
            raise NotImplementedError("BCELoss.value needs SharedTensor.log, which this version does not have")
        floor = output.session.encoding.resolution
        both = torch.stack([output, 1.0 - output]).clamp(min=floor).log()
        log_p, log_q = both[0], both[1]
        # -(y log p + (1 - y) log q) = -(log q + y (log p - log q)): one product.
        return -self._reduce(log_q + (log_p - log_q) * target)


class Loss:
    """What a criterion returns: its output and target, with ``backward()``, ``grad()`` and ``value()``.
    Nothing is computed until asked."""

    def __init__(self, criterion: _Criterion, output: SharedTensor, target: Any) -> None:
        self.criterion = criterion
        self.output = output
        self.target = target

    def grad(self) -> SharedTensor:
        """d loss / d output (for ``model.backward(grad)``).  MSE: 1 round.  BCE: NotImplementedError."""
        return self.criterion._grad(self.output, self.target)

    def backward(self) -> None:
        """Accumulate the gradients of the model that produced the output.  BCE after a final Sigmoid starts
        from the logit gradient (p - y) / N and skips the Sigmoid's backward."""
        if not isinstance(self.output, ModelOutput):
            raise TypeError("loss.backward() needs the output of a model call model(x); otherwise call "
                            "model.backward(loss.grad())")
        module = self.output.module
        if isinstance(self.criterion, BCELoss):
            if not module.ends_with_sigmoid:
                raise NotImplementedError("BCELoss.backward needs a model ending in Sigmoid (gradient (p - y) / N)")
            module._backward_output(self.output, self.criterion.logit_grad(self.output, self.target), True)
        else:
            module._backward_output(self.output, self.grad(), False)

    def value(self, to: int | None = None) -> float | None:
        """The loss, revealed to party ``to`` (None elsewhere) or to all.  Opens one number."""
        opened = self.criterion._value(self.output, self.target).reveal(to=to)
        return None if opened is None else float(opened)


# -- conversion and initialisation ------------------------------------------------------------------------
def from_torch(module: torch.nn.Module, session: "Session", owner: int | None = None, *,
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


def _convert(module: torch.nn.Module, session: "Session", owner: int | None, draws: InitDraws | None) -> Module:
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


def _share_parameter(session: "Session", tensor: torch.Tensor, owner: int) -> SharedTensor:
    value = tensor.detach().to(torch.float64)
    shared = session.share(value if session.rank == owner else None, owner=owner)
    if shared.shape != value.shape:
        raise ValueError(f"party {session.rank}'s architecture has a parameter of shape {tuple(value.shape)}, "
                         f"the owner's has {tuple(shared.shape)}")
    return shared


class InitDraws:
    """One party's private source of uniform draws for joint initialisation.

    AES-128-CTR keyed by the operating system's CSPRNG (``seed=None``, what training uses), so no one else can
    predict the contribution; or, for reproducible tests only, keyed by a hash of an integer ``seed`` that this
    party alone must know (anyone who knows a party's seed knows its contribution; parties must not share seeds).
    Each call of ``uniform`` reads a fresh stream of the key, so several layers may draw from one source.
    """

    __slots__ = ("_prg", "_stream")

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            key = new_key()
        else:
            key = hashlib.sha256(b"smpc joint-init seed:" + str(int(seed)).encode("ascii")).digest()[:16]
        self._prg = AesCtrPrg(key)
        self._stream = 0

    def uniform(self, count: int) -> torch.Tensor:
        """``count`` float64 values uniform in (0, 1), from the next stream."""
        values = self._prg.uniform(self._stream, count)
        self._stream += 1
        return values

    def __repr__(self) -> str:
        return "InitDraws()"


def joint_init_contribution(numel: int, fan_in: int, world_size: int, draws: InitDraws) -> torch.Tensor:
    """One party's private contribution to a joint initialisation: ``numel`` float64 values drawn uniformly
    from (-B/sqrt(n), B/sqrt(n)), B = 1/sqrt(fan_in), so that the sum over n parties has variance B^2/3."""
    bound = (1.0 / fan_in) ** 0.5 / world_size**0.5
    return (draws.uniform(numel) * 2.0 - 1.0) * bound


def _joint_values(session: "Session", shapes: list[tuple[int, ...]], fan_in: int,
                  seed: int | InitDraws | None) -> list[SharedTensor]:
    """The shared sums of every party's contribution, one sharing per party for all ``shapes``."""
    numel = sum(int(torch.Size(shape).numel()) for shape in shapes)
    draws = seed if isinstance(seed, InitDraws) else InitDraws(seed)
    mine = joint_init_contribution(numel, fan_in, session.world_size, draws)
    total = session.share(mine if session.rank == 0 else None, owner=0)
    for owner in range(1, session.world_size):
        total = total + session.share(mine if session.rank == owner else None, owner=owner)
    values, offset = [], 0
    for shape in shapes:
        count = int(torch.Size(shape).numel())
        values.append(total[offset : offset + count].reshape(shape))
        offset += count
    return values


# -- helpers ----------------------------------------------------------------------------------------------
def _take(layer: Module, attribute: str) -> SharedTensor:
    """The cached forward value, cleared: backward consumes it."""
    value = getattr(layer, attribute)
    if value is None:
        raise RuntimeError(f"{type(layer).__name__}.backward without a recorded forward (run the model first; "
                           "each forward supports one backward)")
    setattr(layer, attribute, None)
    return value


def _select(mask: SharedTensor, value: SharedTensor) -> SharedTensor:
    """value where the comparison bit is 1, else 0: one bit product (1 round, exact)."""
    return value.where(mask, 0.0)
