"""Products of shared values: Beaver multiplication and matrix multiplication, with fixed-point rescaling.

Additions, subtractions and negations of shares are local ring operations and need no protocol.
"""

from __future__ import annotations

import torch

from fixedpoint import ring_matmul
from protocols.additive.dealer import beaver_triple, matrix_triple
from protocols.additive.truncation import truncate
from protocols.party import Party


def mul(party: Party, x: torch.Tensor, y: torch.Tensor, *, rescale: bool = True) -> torch.Tensor:
    """Shares of x * y (elementwise, broadcasting as torch does), by a Beaver triple.

    Steps:
      1. Take a triple (a, b, c = a*b) of the operands' shapes from the dealer.
      2. Open eps = x - a and delta = y - b together, in ONE round.
      3. z = c + eps*b + a*delta, and party 0 adds eps*delta (as (a + eps)*delta); now z = x*y exactly.
      4. If ``rescale`` (operands are fixed point), truncate z by 2^frac_bits.
    Rounds: 1 (+1 for the truncation with the dealer method).  Bytes sent per party: 8 (n-1) (|x| + |y|),
    i.e. 16 (n-1) k for two k-element operands, plus 8 (n-1) k for the truncation.
    Error: exact before rescaling; rescaling adds less than 2^-frac_bits.  For encoded inputs the result is
    within |x| e + |y| e + e^2 + 2^-frac_bits of the real product, e = 2^-(frac_bits+1) (encoding error).
    """
    triple = beaver_triple(party, x.shape, y.shape)
    masked = torch.cat([(x - triple.a).reshape(-1), (y - triple.b).reshape(-1)])
    opened = party.open(masked, "mul")
    eps = opened[: x.numel()].reshape(x.shape)
    delta = opened[x.numel() :].reshape(y.shape)
    # c + eps*b + a*delta (+ eps*delta at party 0) in two products: party 0 folds eps into a's term.
    left = triple.a + eps if party.rank == 0 else triple.a
    z = triple.c + eps * triple.b + left * delta
    return truncate(party, z) if rescale else z


def matmul(party: Party, x: torch.Tensor, y: torch.Tensor, *, rescale: bool = True) -> torch.Tensor:
    """Shares of x @ y (torch.matmul semantics: vectors, matrices, batched), by a matrix triple.

    Steps:
      1. Take a matrix triple (A, B, C = A @ B) of the operands' shapes from the dealer.
      2. Open E = x - A and D = y - B together, in ONE round.
      3. z = C + E @ B + A @ D, and party 0 adds E @ D, computed as one exact ring matmul
         [E, A'] @ [B; D] (A' = A + E at party 0, A elsewhere): inner dimension 2k, no third product.
      4. If ``rescale``, truncate z by 2^frac_bits.
    Rounds: 1 (+1 for the truncation).  Bytes sent per party: 8 (n-1) (mk + kp) for (m x k)(k x p), plus
    8 (n-1) mp for the truncation.
    Error: exact before rescaling; rescaling adds less than 2^-frac_bits per output; with encoded inputs,
    each output is within sum_j (|x_ij| + |y_jl|) e + k e^2 + 2^-frac_bits of the real value.
    """
    triple = matrix_triple(party, x.shape, y.shape)
    masked = torch.cat([(x - triple.a).reshape(-1), (y - triple.b).reshape(-1)])
    opened = party.open(masked, "matmul")
    e = opened[: x.numel()].reshape(x.shape)
    d = opened[x.numel() :].reshape(y.shape)
    # C + E@B + A@D (+ E@D at party 0) as ONE ring matmul with twice the inner dimension:
    # [E, A'] @ [B; D] with A' = A + E at party 0 (E@B + (A+E)@D), A elsewhere.
    left = torch.cat([e, triple.a + e if party.rank == 0 else triple.a], dim=-1)
    right = torch.cat([triple.b, d], dim=-2 if d.dim() > 1 else -1)
    z = triple.c + ring_matmul(left, right)
    return truncate(party, z) if rescale else z


def mul_public(party: Party, x: torch.Tensor, public: torch.Tensor, *, rescale: bool) -> torch.Tensor:
    """Shares of x * p for a public int64 p (an encoded float if ``rescale``, a plain integer if not).

    Steps: 1. every party multiplies its share by p locally; 2. truncate if ``rescale``.
    Rounds: 0 (+1 for the truncation).  Error: less than 2^-frac_bits from rescaling, plus |x| e from
    encoding p.
    """
    z = x * public
    return truncate(party, z) if rescale else z


def matmul_public(party: Party, x: torch.Tensor, public: torch.Tensor, *, rescale: bool, left: bool = False
                  ) -> torch.Tensor:
    """Shares of x @ p (or p @ x when ``left``) for a public int64 p; local, then truncated if ``rescale``."""
    z = ring_matmul(public, x) if left else ring_matmul(x, public)
    return truncate(party, z) if rescale else z
