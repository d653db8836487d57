"""Dropout and batch normalisation on shares: the functional forms (``dropout``, ``batch_norm``) and the modules
(``Dropout``, ``BatchNorm1d``, ``BatchNorm2d``, each with ``from_torch``; ``convert_dropout`` and
``convert_batch_norm`` have the signature of ``smpc.nn.convert``'s converters).

Both are written with SharedTensor operations and differentiated by ``smpc.autograd``: dropout through
``where`` and a public product, batch norm in evaluation through its plain operations, batch norm in training
as one recorded node with the closed-form backward (``_batch_norm_backward``: 7 rounds instead of the generic
graph's 21, and no r^3, which leaves the fixed-point range once a channel's variance is below 2^-10).
Dropout's keep-mask is drawn jointly (``dropout_mask``): no single party knows it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

import protocols
from protocols.additive.compare import ltz
from protocols.prg import AesCtrPrg, new_key
from smpc.autograd import no_grad, record
from smpc.nn.init import split_flat
from smpc.nn.module import Module, Parameter
from smpc.tensor import SharedTensor, bit_tensor, cat, stack, where

if TYPE_CHECKING:
    from smpc.session import Session


# -- dropout -------------------------------------------------------------------------------------------------
def dropout_mask(session: Session, shape: Sequence[int], p: float, *, key: bytes | None = None) -> SharedTensor:
    """A shared 0.0 / 1.0 keep-mask of ``shape``, each entry 1 independently with probability 1 - p' (p' below),
    known to no party.  Collective: every party calls it alike; ``key`` is this party's own AES-CTR key for its
    contribution (default: a fresh one from its OS's CSPRNG; never derived from a seed the others know).

    Steps:
      1. Each party draws its share of a ring element r from its own AES-CTR key (r = sum of the shares is
         uniform and independent of any other single party's view; in the replicated family parties 1 and 2
         draw, party 0 plays the helper).  No communication.
      2. p = 1/2: keep = MSB(r) = [r < 0] (``protocols.ltz``, exact), so P(keep) = 1/2 exactly.
         Any other p in (0, 1): ``protocols.bernoulli`` with probability 1 - p (a second comparison of the low
         63 bits of r with the public threshold round((1 - p) 2^63)), so P(keep) = 1 - p' with p' = p rounded
         to a multiple of 2^-63 (``protocols.representable_probability``).
      3. The bits, unscaled, become a 0/1 SharedTensor (``bit_tensor``) that keeps them, so that ``where`` with
         it costs one product without truncation.
    Rounds: one ``ltz`` (p = 1/2) or two in sequence (other p), plus one in the replicated family (back to
    replicated shares); measured in tests/smpc/test_nn_normalization.py: 8 and 16 (dealer), 4 and 7
    (replicated, up to 1,024 draws: its comparisons take 3 rounds there, ``protocols.additive.helped``; 9 and 17
    above).  Bytes sent per party per element: 32.5 (n - 1) per ``ltz`` (``protocols.ltz_bytes``; 72 per
    helped comparison).
    Error: none: each bit is exactly a Bernoulli draw with the probability above.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"a dropout mask needs 0 < p < 1, got p={p}")
    shape = tuple(int(size) for size in shape)
    bits = session.family.call(_keep_bits, shape=shape, keep=1.0 - p, key=key)
    return bit_tensor(session, bits)


def _keep_bits(party: protocols.Party, *, shape: tuple[int, ...], keep: float, key: bytes | None
               ) -> torch.Tensor:
    """Additive shares of the keep bits (``dropout_mask``'s steps 1-2)."""
    if keep == 0.5:
        count = int(torch.Size(shape).numel())
        own = AesCtrPrg(new_key() if key is None else key).ring(0, count).reshape(shape).to(party.device)
        return ltz(party, own)
    return protocols.bernoulli(party, shape, keep, key=key)[0]


def dropout(x: SharedTensor, p: float = 0.5, training: bool = True, *, mask: torch.Tensor | None = None,
            key: bytes | None = None) -> SharedTensor:
    """torch.nn.functional.dropout on shares: x * mask / (1 - p) in training, x itself in evaluation.

    ``mask``: a PUBLIC 0/1 tensor of x's shape given by the caller (every party the same; to reproduce torch
    with the same mask); otherwise the mask is drawn jointly and stays secret (``dropout_mask``; ``key`` as
    there).  p = 0 returns x; p = 1 returns zeros (as torch).
    Steps: 1. the mask (public or ``dropout_mask``); 2. where(mask, x, 0): one bit product without truncation
    (exact integer products for a public mask); 3. times 1/(1 - p): exact when it is an integer (p = 1/2,
    3/4, ...), else a product with a public float and one truncation.
    Autograd: the gradient is g * mask / (1 - p) (``where``'s and the public product's backward rules).
    Rounds (asserted in tests/smpc/test_nn_normalization.py; forward / backward, dealer and replicated):
      secret mask, p = 1/2: 9 / 1 and 5 / 1 (the mask's 8 or 4, then the bit product; the factor 2 is exact);
      secret mask, p = 0.3: 18 / 2 and 10 / 3 (the mask's 16 or 7, the bit product, the truncation);
      (replicated: for up to 1,024 elements; above, the mask takes 9 or 17 rounds there);
      public mask: 0 / 0 for p = 1/2; 1 / 1 and 2 / 2 (one truncation) for p = 0.3.
    Bytes per element: the mask's, one Beaver product (16 (n - 1)) and, for a non-integer 1/(1 - p), one
    truncation.
    Error: none for integer 1/(1 - p) (p = 1/2, 3/4, ...); else at most |x| 2^-(f+1) (1/(1 - p) encoded) plus
    one unit 2^-f (the truncation), and the same for the gradient.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0
    if mask is not None:
        condition: SharedTensor | torch.Tensor = _public_mask(mask, x.shape)
    else:
        condition = dropout_mask(x.session, x.shape, p, key=key)
    kept = where(condition, x, 0.0)
    scale = 1.0 / (1.0 - p)
    return kept * int(scale) if scale.is_integer() else kept * scale


def _public_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The caller's public mask as a bool tensor, checked: x's shape, entries 0 or 1."""
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(shape):
        raise ValueError(f"a dropout mask must be a tensor of the input's shape {tuple(shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("a dropout mask holds only 0 and 1")
    return mask.to(torch.bool)


# -- batch normalisation ---------------------------------------------------------------------------------------
def effective_eps(session: Session, eps: float) -> float:
    """The eps batch_norm adds: ``eps`` itself, or the fixed-point resolution 2^-frac_bits where eps is below it
    (torch's default 1e-5 is below 2^-16 = 1.53e-5: an encoded eps would round to 0 or 1 unit anyway, so we say
    which: 1 unit)."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return max(float(eps), session.encoding.resolution)


def batch_norm(x: SharedTensor, running_mean: SharedTensor | None, running_var: SharedTensor | None,
               weight: SharedTensor | None, bias: SharedTensor | None, training: bool, momentum: float = 0.1,
               eps: float = 1e-5) -> tuple[SharedTensor, SharedTensor | None, SharedTensor | None]:
    """torch.nn.functional.batch_norm on shares, for x of shape (N, C), (N, C, L) or (N, C, H, W); returns the
    output and the new running statistics (shared; the inputs themselves are not modified, and are returned
    unchanged in evaluation or when None).  ``eps``: see ``effective_eps`` (at least 2^-frac_bits).

    Training (statistics over every dimension but C: m values per channel, m >= 2 as torch requires):
      1. mean = sum / m: a local sum, then a division by the public m (one truncation);
      2. c = x - mean (local);  v = mean(c * c): one product with truncation, then the division: the BIASED
         variance, which normalises, as torch;
      3. r = 1/sqrt(v + eps) (``SharedTensor.rsqrt``, "poly4"): v >= 0 (every truncation above floors a
         non-negative value) and eps >= 2^-f, so the input is in rsqrt's domain and r <= 2^(f/2);
      4. xhat = c * r, y = xhat * weight + bias (two products with truncation; one without ``weight``);
      5. running stats (not differentiated): (1 - momentum) rm + momentum mean and (1 - momentum) rv +
         momentum m/(m-1) v (the UNBIASED variance, as torch): four public products, one truncation.
      Steps 1-4 are one fused autograd node (``_batch_norm_backward``: closed form, no r^3).
    Evaluation: y = (x - rm) * (r w) + bias with r = 1/sqrt(rv + eps): plain SharedTensor operations, recorded
    by autograd as they are (statistics unchanged).
    Rounds (asserted in tests/smpc/test_nn_normalization.py): training forward 28 dealer, 29 replicated (mean,
    c * c, its mean, rsqrt 19 (20 replicated), xhat, times weight, the running update; the replicated family
    settles waiting truncations together, ``smpc.deferred``); backward 7 dealer,
    8 replicated; evaluation forward 23 dealer, 24 replicated.  Bytes per element of x: training forward
    three Beaver products and three truncations, backward three of each; per channel: rsqrt's 479 (n - 1).
    Error (forward, e = 2^-17 encoding, u = 2^-16 a truncation): mean within (sum of e)/m + u (+ e |sum| in the
    replicated family's public product); v within the propagated product and mean errors; r within
    1.2e-4 r + 1.5 u + r^3 dv / 2 (rsqrt's bound, ``protocols.approx.sqrt.INV_SQRT_ERROR``, plus its
    derivative over the error dv of v + eps); each later product adds |a| db + |b| da + da db + u.  The tests
    propagate these bounds (``tests/smpc/test_nn_normalization.py``) and check output, running statistics and
    gradients against torch with the same eps.
    Ranges: the per-channel sums of x and of c^2 must stay below 2^int_bits (m |x| < 32768 by default).
    """
    dims = _reduced_dims(x)
    count = x.numel() // x.shape[1]
    eps = effective_eps(x.session, eps)
    if training:
        if count < 2:
            raise ValueError(f"batch_norm in training needs more than 1 value per channel, got input shape "
                             f"{tuple(x.shape)}")
        output, mean, variance = _train_forward(x, weight, bias, eps, dims, count)
        new_mean, new_var = _running_update(running_mean, running_var, mean, variance, momentum, count)
        return output, new_mean, new_var
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm in evaluation needs running_mean and running_var")
    shape = _channel_shape(x)
    scale = (running_var.reshape(shape) + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.reshape(shape)
    output = (x - running_mean.reshape(shape)) * scale
    return (output if bias is None else output + bias.reshape(shape)), running_mean, running_var


def _train_forward(x: SharedTensor, weight: SharedTensor | None, bias: SharedTensor | None, eps: float,
                   dims: tuple[int, ...], count: int) -> tuple[SharedTensor, SharedTensor, SharedTensor]:
    """Steps 1-4 under ``no_grad``, recorded as one node; also returns the batch mean and biased variance."""
    shape = _channel_shape(x)
    with no_grad():
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        variance = (centered * centered).mean(dims, keepdim=True)
        inv_std = (variance + eps).rsqrt()
        normalised = centered * inv_std
        output = normalised if weight is None else normalised * weight.reshape(shape)
        if bias is not None:
            output = output + bias.reshape(shape)
        if output is normalised:
            output = normalised.detach()
    inputs = [x] + [t for t in (weight, bias) if t is not None]
    output = record(output, inputs, _batch_norm_backward, normalised, inv_std, weight, bias is not None, dims,
                    count, name="BatchNormBackward")
    return output, mean, variance


def _batch_norm_backward(grad: SharedTensor, needs: tuple[bool, ...], normalised: SharedTensor,
                         inv_std: SharedTensor, weight: SharedTensor | None, has_bias: bool, dims: tuple[int, ...],
                         count: int) -> tuple[SharedTensor | None, ...]:
    """Gradients of batch_norm in training for (x, weight if any, bias if any), in closed form:
    dbias = sum g, dweight = sum g xhat, dx = (r w) (g - dbias/m - xhat dweight/m) (sums over all but C).

    Steps: 1. g * xhat and r * w in one batched product; 2. the two sums (local, exact); 3. both divided by m
    (one truncation, or exact division in the dealer family); 4. inner = g - dbias/m - xhat (dweight/m) (one
    product); 5. dx = inner * (r w) (one product).  Steps 3-5 only when x needs a gradient.
    Rounds: 3 products and 1 truncation: 7 dealer, 8 replicated (measured).  Error: each product adds one
    truncation u to the propagated errors of its factors (bounds in tests/smpc/test_nn_normalization.py);
    unlike the generic graph (rsqrt's -g r^3 / 2), nothing here exceeds r w times the normalised values.
    """
    channel = inv_std.shape
    scale_pair = [(inv_std, weight.reshape(channel))] if weight is not None else []
    products = _products([(grad, normalised)] + scale_pair)
    grad_weight = products[0].sum(dims, keepdim=True)
    grad_bias = grad.sum(dims, keepdim=True)
    grad_x = None
    if needs[0]:
        scale = products[1] if weight is not None else inv_std
        means = stack([grad_bias, grad_weight]) / count
        grad_x = (grad - means[0] - normalised * means[1]) * scale
    grads: list[SharedTensor | None] = [grad_x]
    if weight is not None:
        grads.append(grad_weight.reshape(weight.shape))
    if has_bias:
        grads.append(grad_bias.reshape(-1))
    return tuple(grads)


def _products(pairs: list[tuple[SharedTensor, SharedTensor]]) -> list[SharedTensor]:
    """a * b (broadcast) for every pair, as one shared product: one round trip and one truncation for all."""
    shapes = [torch.broadcast_shapes(a.shape, b.shape) for a, b in pairs]
    left = cat([a.expand(*shape).reshape(-1) for (a, _), shape in zip(pairs, shapes)])
    right = cat([b.expand(*shape).reshape(-1) for (_, b), shape in zip(pairs, shapes)])
    return split_flat(left * right, shapes)


def _reduced_dims(x: SharedTensor) -> tuple[int, ...]:
    if x.dim() < 2:
        raise ValueError(f"batch_norm expects an input of shape (N, C, ...), got {tuple(x.shape)}")
    return (0, *range(2, x.dim()))


def _channel_shape(x: SharedTensor) -> tuple[int, ...]:
    """(1, C, 1, ...): a per-channel vector broadcast against x."""
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _running_update(running_mean: SharedTensor | None, running_var: SharedTensor | None, mean: SharedTensor,
                    variance: SharedTensor, momentum: float, count: int
                    ) -> tuple[SharedTensor | None, SharedTensor | None]:
    """Step 5, outside the graph: both updates' public products truncated together."""
    if running_mean is None or running_var is None:
        return running_mean, running_var
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    with no_grad():
        channels = running_mean.shape
        terms = stack([running_mean.detach().reshape(-1), running_var.detach().reshape(-1),
                             mean.detach().reshape(-1), variance.detach().reshape(-1)])
        factors = torch.tensor([[1.0 - momentum], [1.0 - momentum], [momentum], [momentum * count / (count - 1)]],
                               dtype=torch.float64)
        weighted = terms * factors
        updated = weighted[:2] + weighted[2:]
    return updated[0].reshape(channels), updated[1].reshape(channels)


# -- modules ------------------------------------------------------------------------------------------------
class Dropout(Module):
    """torch.nn.Dropout(p) on shares: in training, x times a jointly drawn secret keep-mask over 1 - p
    (``dropout``; costs there), in evaluation the identity.  No parameters."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        #: Public keep-masks to use instead of joint ones, one per training forward (to reproduce a plain run
        #: in tests; a public mask tells every party which units were dropped).  None: joint secret masks.
        self.public_masks: Iterator[torch.Tensor] | None = None

    def forward(self, x: SharedTensor) -> SharedTensor:
        mask = next(self.public_masks) if self.training and self.public_masks is not None else None
        return dropout(x, self.p, self.training, mask=mask)

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        return torch.nn.Dropout(self.p)

    @classmethod
    def from_torch(cls, module: torch.nn.Module, session: Session | None = None, owner: int | None = None
                   ) -> Dropout:
        """The shared counterpart of a torch.nn.Dropout (nothing to share)."""
        if type(module) is not torch.nn.Dropout:
            raise TypeError(f"Dropout.from_torch takes a torch.nn.Dropout, got {type(module).__name__}")
        converted = cls(module.p)
        converted.train(module.training)
        return converted

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class _BatchNorm(Module):
    """Batch normalisation over channel dimension 1 (``batch_norm``: steps, rounds, error there).

    ``weight`` and ``bias`` (with ``affine``) are Parameters, public ones and zeros at first as in torch;
    ``running_mean`` and ``running_var`` are shared buffers (public zeros and ones at first), replaced by the
    new shared statistics at every training forward; ``num_batches_tracked`` is a plain int (public: every
    party counts the same forwards).  ``momentum=None`` averages cumulatively (factor 1/num_batches_tracked), as
    torch.  ``eps`` below 2^-frac_bits is used as 2^-frac_bits (``effective_eps``); ``reveal`` gives torch's
    module the eps asked for.

    Give the layer before it no bias (``Conv2d(..., bias=False)``, as is usual): such a bias has a gradient of
    exactly zero in real arithmetic, but on shares its gradient is the truncation bias of the input gradient's
    sums over the batch (a few 1e-3 per step for 128 values a channel), and momentum turns that into a drift
    (tests/smpc/test_nn_train_steps.py).
    """

    torch_class: type[torch.nn.modules.batchnorm._BatchNorm] = torch.nn.BatchNorm1d
    input_dims: tuple[int, ...] = (2, 3)
    running_mean: SharedTensor
    running_var: SharedTensor

    def __init__(self, session: Session, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"{type(self).__name__} needs num_features >= 1, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        effective_eps(session, eps)  # validates
        self.num_features, self.eps, self.momentum, self.affine = num_features, float(eps), momentum, affine
        ones, zeros = torch.ones(num_features, dtype=torch.float64), torch.zeros(num_features, dtype=torch.float64)
        self.weight = Parameter(session.public(ones)) if affine else None
        self.bias = Parameter(session.public(zeros)) if affine else None
        self.register_buffer("running_mean", session.public(zeros))
        self.register_buffer("running_var", session.public(ones))
        self.num_batches_tracked = 0

    def forward(self, x: SharedTensor) -> SharedTensor:
        """Training: batch statistics, and the running ones updated; evaluation: the running statistics."""
        if x.dim() not in self.input_dims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects an input of "
                             f"{' or '.join(f'{d}' for d in self.input_dims)} dimensions with {self.num_features} "
                             f"channels in dimension 1, got shape {tuple(x.shape)}")
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked += 1
            if momentum is None:
                momentum = 1.0 / self.num_batches_tracked
        output, mean, var = batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                       self.training, 0.0 if momentum is None else momentum, self.eps)
        if self.training:
            assert mean is not None and var is not None
            self.register_buffer("running_mean", mean)
            self.register_buffer("running_var", var)
        return output

    def _to_torch(self, values: Mapping[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.nn.Module:
        layer = self.torch_class(self.num_features, eps=self.eps, momentum=self.momentum, affine=self.affine,
                                 dtype=dtype)
        with torch.no_grad():
            if self.affine:
                layer.weight.copy_(values[prefix + "weight"])
                layer.bias.copy_(values[prefix + "bias"])
            for name in ("running_mean", "running_var"):
                getattr(layer, name).copy_(values[prefix + name])
            if layer.num_batches_tracked is not None:
                layer.num_batches_tracked.fill_(self.num_batches_tracked)
        return layer

    @classmethod
    def from_torch(cls, module: torch.nn.Module, session: Session, owner: int | None = None) -> _BatchNorm:
        """The shared counterpart of a torch BatchNorm of this class: every party passes a module of the same
        configuration; with ``owner``, the owner's weight, bias and running statistics are shared (one round
        each) and the others' values ignored; with None, torch's public initial values (weights 1 and 0, stats
        0 and 1).  ``num_batches_tracked`` is taken from each party's own module (pass the same).  The mode
        (train/eval) is the module's."""
        if type(module) is not cls.torch_class:
            raise TypeError(f"{cls.__name__}.from_torch takes a torch.nn.{cls.torch_class.__name__}, got "
                            f"{type(module).__name__}")
        if not module.track_running_stats:
            raise TypeError(f"cannot convert {cls.torch_class.__name__} with track_running_stats=False: smpc keeps "
                            "running statistics")
        converted = cls(session, module.num_features, module.eps, module.momentum, module.affine)
        if owner is not None:
            for name, value in _torch_state(module).items():
                owned = _share_owned(session, value, owner, name)
                if name in ("weight", "bias"):
                    setattr(converted, name, Parameter(owned))
                else:
                    converted.register_buffer(name, owned)
        converted.num_batches_tracked = int(module.num_batches_tracked)  # type: ignore[arg-type]
        converted.train(module.training)
        return converted

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine})")


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d on shares: inputs (N, C) or (N, C, L)."""

    torch_class = torch.nn.BatchNorm1d
    input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d on shares: inputs (N, C, H, W)."""

    torch_class = torch.nn.BatchNorm2d
    input_dims = (4,)


def _torch_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a BatchNorm shares: weight and bias (if affine), running mean and variance."""
    names = (["weight", "bias"] if getattr(module, "affine", False) else []) + ["running_mean", "running_var"]
    return {name: getattr(module, name).detach().to(torch.float64) for name in names}


def _share_owned(session: Session, value: torch.Tensor, owner: int, name: str) -> SharedTensor:
    """The owner's ``value`` shared; every party checks the shape it receives against its own module's."""
    shared = session.share(value if session.rank == owner else None, owner=owner)
    if shared.shape != value.shape:
        raise ValueError(f"party {session.rank}'s {name} has shape {tuple(value.shape)}, the owner's "
                         f"{tuple(shared.shape)}")
    return shared


def convert_dropout(module: torch.nn.Module, session: Session, owner: int | None, draws: object) -> Module:
    """``smpc.nn.convert``'s converter for torch.nn.Dropout (``Converter`` signature)."""
    return Dropout.from_torch(module, session, owner)


def convert_batch_norm(module: torch.nn.Module, session: Session, owner: int | None, draws: object) -> Module:
    """``smpc.nn.convert``'s converter for torch.nn.BatchNorm1d and BatchNorm2d (``Converter`` signature;
    without an owner, torch's public initial values: nothing to draw)."""
    cls: type[_BatchNorm] = BatchNorm2d if type(module) is torch.nn.BatchNorm2d else BatchNorm1d
    return cls.from_torch(module, session, owner)
