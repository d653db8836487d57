"""Exact arithmetic in Z_2^64 on int64 tensors.

torch's int64 ``+ - *`` and, on the CPU, int64 ``matmul`` wrap modulo 2^64 (measured with torch 2.13 on this
project's 2-core machine, one thread, 1024^2: int64 matmul 74 ms, float64 49 ms).  CUDA has no int64 matmul,
so there ``ring_matmul`` splits both operands into signed limbs and multiplies them with float64 GEMMs, whose
sums stay exact up to 2^53 (6 GEMMs for inner dimensions up to 2048).
"""

from __future__ import annotations

import torch

#: float64 represents integers exactly up to 2^53; every partial sum of limb products must stay within it.
_EXACT_BITS = 53
#: Inner dimensions the limb method accepts (below this, at most 10 limb GEMMs; 6 up to 2048).
_MAX_LIMB_INNER = 1 << 19


def logical_shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x >> bits`` treating int64 as unsigned 64-bit (zero fill)."""
    if bits == 0:
        return x.clone()
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def limb_width(inner: int) -> int:
    """Widest signed limb (bits) whose products, summed over ``inner`` terms, stay exact in float64:
    |limb| <= 2^(w-1), so each sum is at most inner * 2^(2w-2) <= 2^53."""
    return (_EXACT_BITS - max(inner - 1, 1).bit_length()) // 2 + 1


def _signed_limbs(x: torch.Tensor, width: int, count: int) -> list[torch.Tensor]:
    """x = sum_i limb_i 2^(width i) modulo 2^64, each |limb_i| <= 2^(width-1), as float64."""
    limbs = []
    rest = x
    for _ in range(count - 1):
        low = rest & ((1 << width) - 1)
        low = low - (((low >> (width - 1)) & 1) << width)  # to [-2^(w-1), 2^(w-1))
        limbs.append(low.to(torch.float64))
        rest = (rest - low) >> width  # low bits are zero, so this is exact modulo 2^64
    limbs.append(rest.to(torch.float64))
    return limbs


def ring_matmul_add(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out += a @ b`` modulo 2^64, in place, for int64 tensors where ``a @ b`` has ``out``'s shape; returns
    ``out``.  On the CPU with 2-D operands the GEMM accumulates into ``out`` itself (``addmm_``: torch's int64
    GEMM wraps like its matmul), which saves the pass and the temporary of a separate addition; anything else
    adds ``ring_matmul(a, b)``.  Error: none (exact)."""
    if (out.device.type == "cpu" and out.dtype == a.dtype == b.dtype == torch.int64 and out.dim() == a.dim()
            == b.dim() == 2 and out.shape == (a.shape[0], b.shape[1]) and a.shape[1] == b.shape[0]):
        return out.addmm_(a, b)
    return out.add_(ring_matmul(a, b))


def ring_matmul(a: torch.Tensor, b: torch.Tensor, *, method: str = "auto") -> torch.Tensor:
    """``torch.matmul(a, b)`` modulo 2^64 for int64 tensors (same broadcasting rules), computed exactly.

    ``method``: ``"int64"`` (torch's integer matmul; CPU), ``"limbs"`` (float64 GEMMs on signed limbs, below),
    or ``"auto"``: int64 on the CPU, limbs elsewhere.

    Steps (limbs), for inner dimension k:
      1. w = limb_width(k) (22 bits for k <= 2048, 18 for k < 2^19); L = ceil(64 / w) limbs.
      2. Split a and b into L signed limbs each (|limb| <= 2^(w-1)), as float64.
      3. For every pair (i, j) with w (i + j) < 64 (higher ones vanish modulo 2^64), one float64 GEMM
         a_i @ b_j: each entry is a sum of k integers of magnitude <= 2^(2w-2), at most 2^53: exact.
      4. Convert to int64 and add the products shifted by w (i + j) bits, wrapping modulo 2^64.
    Cost: 6 GEMMs for k <= 2048 (3 limbs of 22 bits), 10 up to k < 2^19.  Error: none (exact).
    Refuses (ValueError) an inner dimension of 2^19 or more.
    """
    if a.dtype != torch.int64 or b.dtype != torch.int64:
        raise TypeError("ring_matmul expects int64 tensors")
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("ring_matmul needs at least 1-D operands")
    if method == "auto":
        method = "int64" if a.device.type == "cpu" else "limbs"
    if method == "int64":
        return torch.matmul(a, b)
    if method != "limbs":
        raise ValueError(f"unknown ring_matmul method {method!r}")
    inner = a.shape[-1]
    if inner >= _MAX_LIMB_INNER:
        raise ValueError(f"inner dimension {inner} too large for exact limb matmul (at most {_MAX_LIMB_INNER - 1})")
    a_vec, b_vec = a.dim() == 1, b.dim() == 1
    if a_vec:
        a = a.unsqueeze(0)
    if b_vec:
        b = b.unsqueeze(-1)
    width = limb_width(inner)
    count = -(-64 // width)
    a_limbs, b_limbs = _signed_limbs(a, width, count), _signed_limbs(b, width, count)
    result = None
    for i in range(count):
        for j in range(count - i):
            if width * (i + j) >= 64:
                continue
            term = torch.matmul(a_limbs[i], b_limbs[j]).to(torch.int64) << (width * (i + j))
            result = term if result is None else result + term
    assert result is not None
    if b_vec:
        result = result.squeeze(-1)
    if a_vec:
        result = result.squeeze(-1 if b_vec else -2)
    return result
