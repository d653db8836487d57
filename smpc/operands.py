"""Public operands of shared arithmetic: Python numbers, lists, numpy arrays and torch tensors, as torch tensors."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from fixedpoint import FixedPoint


def public_tensor(value: Any) -> torch.Tensor:
    """``value`` as a torch tensor: integers stay int64, floats become float64.  TypeError for anything else
    (a SharedTensor included: it is not a public value)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (bool, numbers.Integral)):
        return torch.as_tensor(int(value), dtype=torch.int64)
    if isinstance(value, numbers.Real):
        return torch.as_tensor(float(value), dtype=torch.float64)
    if isinstance(value, (list, tuple)):
        tensor = torch.as_tensor(value)
        return tensor.to(torch.float64) if tensor.is_floating_point() else tensor
    raise TypeError(f"unsupported operand type {type(value).__name__} for a SharedTensor (expected a public value)")


def public_operand(value: Any) -> tuple[torch.Tensor, bool]:
    """(tensor, is_integer): Python ints, bools and integer tensors multiply exactly, floats rescale."""
    tensor = public_tensor(value)
    if tensor.is_floating_point() or tensor.is_complex():
        return tensor, False
    return tensor.to(torch.int64), True


def check_multiplier(public: torch.Tensor, encoding: FixedPoint, inner: int = 1) -> None:
    """ValueError unless exact products with the public integers ``public`` (summed over ``inner`` terms, for a
    matmul) stay inside the 64-bit ring for every shared x in range: inner * max |k| < 2^(63 - int_bits -
    frac_bits), 2^32 by default.  Beyond that a product could wrap the ring into a plausible value that no
    check would notice; a product below it but outside |x| < 2^int_bits is ``check_range``'s to find."""
    if not public.numel():
        return
    largest = int(public.abs().max()) if int(public.min()) != torch.iinfo(torch.int64).min else 1 << 63
    bits = 63 - encoding.int_bits - encoding.frac_bits
    if largest * max(inner, 1) >= 1 << bits:
        raise ValueError(f"integer multiplier {largest}{f' (over {inner} terms)' if inner > 1 else ''} could wrap "
                         f"the 64-bit ring (products need |k| < 2^{bits} with |x| < 2^{encoding.int_bits} at "
                         f"{encoding.frac_bits} fractional bits); multiply by a float or rescale")
