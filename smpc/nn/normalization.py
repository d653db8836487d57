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
from smpc.autograd import no_grad
from smpc.tensor import SharedTensor, bit_tensor, stack, where

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
    unchanged in evaluation or when None).

    Training (statistics over every dimension but C, m values per channel, m >= 2 as torch requires):
      1. mean = sum / m: a local sum and a division by the public m (one truncation);
      2. c = x - mean (local);  v = mean(c * c) (one product with truncation, then the division): the BIASED
         variance, which normalises, as torch;
      3. r = 1/sqrt(v + eps) (``SharedTensor.rsqrt``, "poly4"; eps: ``effective_eps``, at least one unit, so
         v + eps >= 2^-f > 0: v >= 0 since every truncation above floors a non-negative value);
      4. s = r * weight (C values; r itself without affine), y = c * s + bias (one product with truncation);
      5. running stats (not differentiated): (1 - momentum) rm + momentum mean and (1 - momentum) rv +
         momentum m/(m-1) v (the UNBIASED variance, as torch), two public products, one truncation.
    Evaluation: steps 3-4 with rm, rv in place of mean, v (statistics unchanged).
    Rounds (training, measured in tests/smpc/test_nn_normalization.py): mean T, c*c 1 + T, its mean T, rsqrt 19
    (dealer; one more in the replicated family), r*w 1 + T, c*s 1 + T, running stats T (in parallel with no
    other step, so added), where T is a truncation's rounds (1 dealer, 2 replicated; the replicated mean is a
    public product).  Bytes per element of x: two Beaver products and two truncations; per channel: rsqrt's
    479 (n - 1) and two products.
    Error (forward, |x| <= X per channel): mean within (m e + u)/m + u; v within 2 X (dmean) + u's; r within
    1.2e-4 r + 1.5 u + r^3 dv / 2 (rsqrt's bound, ``protocols.approx.sqrt.INV_SQRT_ERROR``, and its
    derivative); y within |c| dr |w| + |c| r dw + dc r |w| + 2 u.  The tests propagate these bounds (e = 2^-17,
    u = 2^-16) and check forward, running statistics and gradients against torch.
    Autograd records steps 1-4 (the rsqrt's backward is -g r^3 / 2 from its output).
    """
    dims = _reduced_dims(x)
    count = x.numel() // x.shape[1]
    eps = effective_eps(x.session, eps)
    if training:
        if count < 2:
            raise ValueError(f"batch_norm in training needs more than 1 value per channel, got input shape "
                             f"{tuple(x.shape)}")
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        variance = (centered * centered).mean(dims, keepdim=True)
        output = _normalise(centered, variance, weight, bias, eps)
        new_mean, new_var = _running_update(running_mean, running_var, mean, variance, momentum, count)
        return output, new_mean, new_var
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm in evaluation needs running_mean and running_var")
    shape = _channel_shape(x)
    centered = x - running_mean.reshape(shape)
    return _normalise(centered, running_var.reshape(shape), weight, bias, eps), running_mean, running_var


def _reduced_dims(x: SharedTensor) -> tuple[int, ...]:
    if x.dim() < 2:
        raise ValueError(f"batch_norm expects an input of shape (N, C, ...), got {tuple(x.shape)}")
    return (0, *range(2, x.dim()))


def _channel_shape(x: SharedTensor) -> tuple[int, ...]:
    """(1, C, 1, ...): a per-channel vector broadcast against x."""
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _normalise(centered: SharedTensor, variance: SharedTensor, weight: SharedTensor | None,
               bias: SharedTensor | None, eps: float) -> SharedTensor:
    """c / sqrt(v + eps) * weight + bias (steps 3-4)."""
    shape = _channel_shape(centered)
    scale = (variance + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.reshape(shape)
    output = centered * scale
    return output if bias is None else output + bias.reshape(shape)


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
