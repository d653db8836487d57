"""Dropout and batch normalisation on shares: the functional forms (``dropout``, ``batch_norm``) and the modules
(``Dropout``, ``BatchNorm1d``, ``BatchNorm2d``).

Both are written with SharedTensor operations, so ``smpc.autograd`` differentiates them (nothing here has a
hand-written backward).  Dropout's keep-mask is drawn jointly (``dropout_mask``): no single party knows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

import protocols
from protocols.additive.compare import ltz
from protocols.prg import AesCtrPrg, new_key
from smpc.autograd import no_grad, record
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
    replicated shares); measured in tests/smpc/test_nn_normalization.py: 8 and 16 (dealer), 9 and 17
    (replicated).  Bytes sent per party per element: 32.5 (n - 1) per ``ltz`` (``protocols.ltz_bytes``).
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
    Rounds (forward): the mask's (``dropout_mask``; 0 for a public mask), plus 1 for a secret mask (the bit
    product), plus a truncation's (1 dealer, 2 replicated) when 1/(1 - p) is not an integer.  Backward: the
    same product and truncation.  Bytes per element: one Beaver product (16 (n - 1), secret mask) and one
    truncation.  Error: none for integer 1/(1 - p); else at most |x| 2^-(f+1) (1/(1 - p) encoded) plus one
    unit 2^-f (the truncation).
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
    Rounds (asserted in tests/smpc/test_nn_normalization.py): training forward 28 dealer, 32 replicated (mean,
    c * c, its mean, rsqrt 19 (20 replicated), xhat, times weight, the running update); backward 7 dealer,
    8 replicated.  Bytes per element of x: training forward three Beaver products and
    three truncations, backward three of each; per channel: rsqrt's 479 (n - 1).
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
    flat = left * right
    results, start = [], 0
    for shape in shapes:
        size = int(torch.Size(shape).numel())
        results.append(flat[start:start + size].reshape(shape))
        start += size
    return results


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
