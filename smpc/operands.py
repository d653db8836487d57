"""Public operands of shared arithmetic: Python numbers, lists, numpy arrays and torch tensors, as torch tensors."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch


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
