"""Fixed-point encoding of real numbers into the ring Z_2^64 (held as two's-complement int64).

A real ``v`` is stored as ``round(v * 2^frac_bits)``.  ``int_bits`` bounds the magnitude of every value a
computation may hold, *products before truncation included*: ``|v| < 2^int_bits``.  Inside that bound every
protocol of this project is exact up to its stated rounding error; outside it results are wrong, which is why
``encode`` refuses such inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

RING_BITS = 64

ArrayLike = torch.Tensor | np.ndarray | float | int | list | tuple


@dataclass(frozen=True)
class FixedPoint:
    """Encoding parameters of a session.  Pure: no state beyond the two numbers.

    ``frac_bits``: fractional bits (resolution ``2^-frac_bits``, default 16 -> 1.5e-5).
    ``int_bits``: bound on magnitudes, ``|v| < 2^int_bits`` (default 15 -> 32768).  The truncation protocols
    need ``int_bits + 2 * frac_bits <= 61`` (a product at double scale, plus an offset of the same size, must
    stay below 2^63 so the unsigned comparisons of the truncation never wrap).
    """

    frac_bits: int = 16
    int_bits: int = 15

    def __post_init__(self) -> None:
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 30:
            raise ValueError(f"frac_bits must be an integer in 0..30, got {self.frac_bits!r}")
        if not isinstance(self.int_bits, int) or self.int_bits < 1:
            raise ValueError(f"int_bits must be a positive integer, got {self.int_bits!r}")
        if self.int_bits + 2 * self.frac_bits > 61:
            raise ValueError(
                f"int_bits + 2*frac_bits must be <= 61 so products fit the 64-bit ring; "
                f"got int_bits={self.int_bits}, frac_bits={self.frac_bits}"
            )

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits

    @property
    def max_abs(self) -> float:
        """Largest magnitude (exclusive) a value may have: ``2^int_bits``."""
        return float(1 << self.int_bits)

    @property
    def resolution(self) -> float:
        return 1.0 / self.scale

    @property
    def product_bits(self) -> int:
        """Bits of a product at double scale: ``|x*y| * 2^(2 frac_bits) < 2^product_bits``."""
        return self.int_bits + 2 * self.frac_bits

    def encode(self, value: ArrayLike) -> torch.Tensor:
        """Float(s) -> int64 ring elements.  Raises ValueError on NaN, infinity or a value whose rounded
        encoding is not below ``2^int_bits`` in magnitude (so every accepted value decodes to ``|v| < 2^int_bits``;
        the largest accepted magnitude is ``2^int_bits - 2^-frac_bits``).

        Integer (and bool) tensors and arrays are exact integers: k is stored as k * 2^frac_bits exactly, never
        through a float, and decodes to k exactly; |k| >= 2^int_bits is refused with a ValueError naming the
        integer (``encode_integers``), never wrapped.

        Error: ``|decode(encode(v)) - v| <= 2^-(frac_bits+1)``; none for integers.
        """
        if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
            return self.encode_integers(value)
        if isinstance(value, torch.Tensor):
            tensor = value.detach()
        elif isinstance(value, np.ndarray):
            tensor = torch.from_numpy(value)
        else:
            # Python floats are float64; torch.as_tensor alone would round them to float32 first.
            tensor = torch.as_tensor(value, dtype=torch.float64)
        if tensor.is_complex():
            raise ValueError("complex values cannot be encoded")
        if not tensor.is_floating_point():
            return self.encode_integers(tensor)
        tensor = tensor.to(dtype=torch.float64)
        if tensor.numel():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = tensor[~finite]
                kind = "NaN" if bool(torch.isnan(bad).any()) else "infinite"
                raise ValueError(f"cannot encode {kind} values ({int((~finite).sum())} of {tensor.numel()} elements)")
        # The bound applies to what is stored, so it is checked after rounding: 32767.999995 rounds to 2^31 at
        # 16 fractional bits, which would decode to 32768.0, outside |v| < 2^15.
        rounded = torch.round(tensor * self.scale)
        if rounded.numel():
            largest = float(rounded.abs().max())
            if largest >= float(1 << (self.int_bits + self.frac_bits)):
                shown = float(tensor.abs().max())
                raise ValueError(
                    f"value {shown:.9g} is outside the safe fixed-point range |v| < 2^{self.int_bits} = "
                    f"{self.max_abs:g} (after rounding to a multiple of 2^-{self.frac_bits}); rescale the input "
                    "or raise int_bits (int_bits + 2*frac_bits <= 61)"
                )
        return rounded.to(torch.int64)

    def encode_integers(self, value: torch.Tensor | np.ndarray) -> torch.Tensor:
        """An integer or bool tensor (or numpy array) -> int64 ring elements k * 2^frac_bits, exactly.  Raises
        ValueError naming the first integer with |k| >= 2^int_bits (compared as integers, so no float rounding
        moves the bound, and uint64 values of 2^63 and more are refused rather than wrapped into negatives)."""
        limit = 1 << self.int_bits
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "u":  # compare before converting: uint64 may not fit int64
                too_large = value >= limit
                if too_large.any():
                    raise ValueError(self._integer_message(int(value[too_large][0])))
            tensor = torch.from_numpy(value.astype(np.int64))
        elif value.dtype == torch.bool:
            tensor = value.detach().to(torch.int64)
        elif torch.iinfo(value.dtype).max > torch.iinfo(torch.int64).max:  # uint64
            return self.encode_integers(value.detach().cpu().numpy()).to(value.device)
        else:
            tensor = value.detach()
        tensor = tensor.to(torch.int64)
        outside = (tensor >= limit) | (tensor <= -limit)
        if bool(outside.any()):
            raise ValueError(self._integer_message(int(tensor[outside][0])))
        return tensor * self.scale

    def _integer_message(self, value: int) -> str:
        return (f"integer {value} is outside the safe fixed-point range |v| < 2^{self.int_bits} = "
                f"{1 << self.int_bits}; integers are encoded exactly as k * 2^{self.frac_bits}: rescale the input "
                "or raise int_bits (int_bits + 2*frac_bits <= 61)")

    def encode_int(self, value: ArrayLike) -> torch.Tensor:
        """Encode exact integers (e.g. counts) with the same scale; refuses non-integers and integers whose
        encoding would not fit the ring (|k| 2^frac_bits >= 2^63)."""
        tensor = torch.as_tensor(value)
        if tensor.is_floating_point():
            raise ValueError("expected integers")
        tensor = tensor.to(torch.int64)
        if tensor.numel() and int(tensor.abs().max()) >= (1 << (RING_BITS - 1 - self.frac_bits)):
            raise ValueError("integer too large for the ring at this scale")
        return tensor * self.scale

    def decode(self, ring: torch.Tensor) -> torch.Tensor:
        """int64 ring elements -> float64 values (two's complement, so negatives decode as negatives)."""
        if ring.dtype != torch.int64:
            raise TypeError(f"decode expects int64 ring elements, got {ring.dtype}")
        # In place on the new float64 tensor; multiplying by 2^-frac_bits is exact, as the division was.
        return ring.to(torch.float64).mul_(math.ldexp(1.0, -self.frac_bits))

    def local_shift_failure_probability(self) -> float:
        """Chance that the two-party local-shift truncation of one element is wrong by about 2^(64-frac_bits)."""
        return math.ldexp(1.0, self.product_bits + 1 - RING_BITS)
