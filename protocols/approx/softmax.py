"""softmax and log_softmax along a dimension, composed from the exact maximum, exp, reciprocal and log."""

from __future__ import annotations

import torch

from protocols.additive.arithmetic import mul
from protocols.additive.compare import maximum
from protocols.approx.exp import exp
from protocols.approx.log import log
from protocols.approx.reciprocal import reciprocal
from protocols.party import Party


def _shifted_exp(party: Party, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - max, exp(x - max), sum of those exps) along ``dim``; the exps lie in (0, 1], their sum in [1, m]."""
    top, _ = maximum(party, x, dim)
    shifted = x - top.unsqueeze(dim)
    exps = exp(party, shifted)
    return shifted, exps, exps.sum(dim=dim, keepdim=True)


def softmax(party: Party, x: torch.Tensor, dim: int) -> torch.Tensor:
    """exp(x_i - max) / sum_j exp(x_j - max) along ``dim``.

    Steps:
      1. The exact maximum along ``dim`` (tournament, 9 ceil(log2 m) rounds) and x - max <= 0 (local).
      2. exp of the non-positive differences (``protocols.approx.exp``), the sum along ``dim`` (local), which
         lies in [1, m] because the maximum contributes exp(0) = 1.
      3. The reciprocal of the sum (``protocols.approx.reciprocal``) and one fixed-point product.
    Rounds: 9 ceil(log2 m) + rounds(exp) + rounds(reciprocal) + 2.
    Domain: any input in the fixed-point range; the bound below is stated and tested for m <= 32.
    Error: absolute, at most (m + 1) 5.6e-4 + 4e-4 per output: exp's absolute error 5.6e-4 on (-inf, 0] for
    each term and for the sum S in [1, m], and the reciprocal's error R/S + A (R = 3.5e-4, A = 2 units) times
    an exp of at most 1, plus the final product's truncation.
    """
    dim = dim % x.dim()
    _, exps, total = _shifted_exp(party, x, dim)
    inverse = reciprocal(party, total)
    return mul(party, exps, inverse.expand_as(exps))


def log_softmax(party: Party, x: torch.Tensor, dim: int) -> torch.Tensor:
    """(x_i - max) - log(sum_j exp(x_j - max)) along ``dim``.

    Steps: as ``softmax`` steps 1 and 2, then the log of the sum (in [1, m]) subtracted locally.
    Rounds: 9 ceil(log2 m) + rounds(exp) + rounds(log).
    Domain: any input in the fixed-point range.  Error: absolute, at most 1e-4 + m 5.6e-4 per output (the log's
    absolute error 1e-4 on [1, m], plus the sum's error m 5.6e-4 divided by the sum, which is at least 1);
    x - max is exact.  The tests assert it.
    """
    dim = dim % x.dim()
    shifted, _, total = _shifted_exp(party, x, dim)
    return shifted - log(party, total)
