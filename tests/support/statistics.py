"""Statistical checks that values look uniform, and two-sample tests that two samples look alike.

A check fails with probability at most its ``alpha`` when the values are truly uniform (tests split their
significance level over their checks by Bonferroni).  For a sample of 64-bit words (``uniformity_failures``),
alpha is split evenly between two families:
  * bits: each of the 64 bit frequencies p_hat satisfies |p_hat - 1/2| < z sqrt(1/4N), z the two-sided normal
    quantile for the family's share of alpha split over the 64 bits;
  * bytes: Pearson's chi-square of the 256 byte-value counts (255 degrees of freedom) stays under the
    critical value at the family's share of alpha (Wilson-Hilferty approximation of the chi-square quantile).
Opened bits (one byte per element, 0 or 1) are checked by their frequency of ones (``bit_failures``); residues
modulo a small prime (one byte each) by Pearson's chi-square of their counts (``residue_failures``).
Two samples: a two-sample chi-square (homogeneity, 2 x 256 table, 255 dof) compares byte histograms of words;
a pooled two-proportion test compares the frequencies of ones of bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: Significance level of each test function of the view and uniformity tests.
ALPHA = 1e-6
#: Elements per sample: 20,000 words = 160,000 bytes (625 expected per byte value).
SAMPLE = 20_000
#: Degrees of freedom of the byte chi-square (256 values) and of the 2 x 256 homogeneity table.
BYTE_DOF = 255


def normal_upper_quantile(alpha: float) -> float:
    """z with P(Z > z) = alpha for a standard normal Z, by bisection on erfc (accurate to ~1e-12)."""
    low, high = 0.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * math.erfc(middle / math.sqrt(2.0)) > alpha:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def chi_square_critical(dof: int, alpha: float) -> float:
    """Upper alpha quantile of chi-square(dof), Wilson-Hilferty: dof (1 - 2/(9 dof) + z sqrt(2/(9 dof)))^3.
    For dof=255, alpha=1e-6 this is 377.2 (the exact quantile differs by well under 1%)."""
    z = normal_upper_quantile(alpha)
    spread = 2.0 / (9.0 * dof)
    return dof * (1.0 - spread + z * math.sqrt(spread)) ** 3


def as_words(values: Any) -> np.ndarray:
    """Flatten int64 tensors/arrays into one uint64 array (the same bits)."""
    array = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return np.ascontiguousarray(array, dtype=np.int64).reshape(-1).view(np.uint64)


def byte_counts(words: np.ndarray) -> np.ndarray:
    return np.bincount(words.view(np.uint8), minlength=256).astype(np.float64)


def uniformity_failures(words: np.ndarray, alpha: float) -> list[str]:
    """Why ``words`` do not look uniform at significance ``alpha`` (split evenly between the bit family and
    the byte chi-square); empty when they do."""
    failures = []
    count = words.size
    bits = ((words[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
    z = normal_upper_quantile(alpha / 2 / 64 / 2)  # half of alpha, over 64 bits, two-sided
    limit = z * math.sqrt(0.25 / count)
    for bit in np.flatnonzero(np.abs(bits - 0.5) >= limit):
        failures.append(f"bit {bit} set in {bits[bit]:.4f} of {count} words (limit 0.5 +- {limit:.4f})")
    observed = byte_counts(words)
    expected = observed.sum() / 256
    statistic = float(((observed - expected) ** 2 / expected).sum())
    critical = chi_square_critical(BYTE_DOF, alpha / 2)
    if statistic >= critical:
        failures.append(f"byte chi-square {statistic:.1f} >= {critical:.1f}")
    return failures


def homogeneity_statistic(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson chi-square of the 2 x 256 table of byte counts of two samples (255 dof)."""
    table = np.stack([byte_counts(first), byte_counts(second)])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def bit_failures(bits: np.ndarray, alpha: float) -> list[str]:
    """Why opened bytes do not look like uniform bits at significance ``alpha``: any value but 0 or 1, or a
    frequency of ones outside 1/2 +- z sqrt(1/4N) (two-sided)."""
    if bits.size and int(bits.max()) > 1:
        return [f"opened bytes other than 0/1: {sorted(set(np.unique(bits).tolist()) - {0, 1})[:5]}"]
    ones = float(bits.mean())
    limit = normal_upper_quantile(alpha / 2) * math.sqrt(0.25 / bits.size)
    return [] if abs(ones - 0.5) < limit else [f"ones in {ones:.4f} of {bits.size} bits (limit 0.5 +- {limit:.4f})"]


def residue_counts(values: np.ndarray, modulus: int) -> np.ndarray:
    return np.bincount(values.reshape(-1), minlength=modulus).astype(np.float64)


def residue_failures(values: np.ndarray, modulus: int, alpha: float) -> list[str]:
    """Why ``values`` do not look uniform modulo ``modulus`` at significance ``alpha``: any value outside
    0..modulus-1, or Pearson's chi-square of the counts (modulus - 1 dof) at or above its critical value."""
    if values.size and int(values.max()) >= modulus:
        return [f"values outside 0..{modulus - 1}: {int(values.max())}"]
    observed = residue_counts(values, modulus)
    expected = observed.sum() / modulus
    statistic = float(((observed - expected) ** 2 / expected).sum())
    critical = chi_square_critical(modulus - 1, alpha)
    return [] if statistic < critical else [f"residue chi-square {statistic:.1f} >= {critical:.1f}"]


def residue_homogeneity_statistic(first: np.ndarray, second: np.ndarray, modulus: int) -> float:
    """Pearson chi-square of the 2 x modulus table of residue counts of two samples (modulus - 1 dof)."""
    table = np.stack([residue_counts(first, modulus), residue_counts(second, modulus)])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def two_proportion_statistic(first: np.ndarray, second: np.ndarray) -> float:
    """|z| of the pooled two-proportion test of the frequencies of ones in two bit samples."""
    p1, p2 = float(first.mean()), float(second.mean())
    pooled = (first.sum() + second.sum()) / (first.size + second.size)
    spread_ = math.sqrt(pooled * (1 - pooled) * (1 / first.size + 1 / second.size))
    return abs(p1 - p2) / spread_ if spread_ else (0.0 if p1 == p2 else math.inf)
