"""Hypothesis strategies for tensors and shapes that several test modules draw from."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

Shape = tuple[int, ...]

#: Shapes of at most 3 dimensions of side <= 4 (numel <= 64).
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
#: Pairs of shapes that broadcast against each other (at most 3 dimensions of side <= 4).
BROADCAST_PAIRS = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)


def float_arrays(shape: Shape, limit: float) -> st.SearchStrategy[torch.Tensor]:
    """float64 tensors of ``shape`` with values in [-limit, limit]."""
    elements = st.floats(-limit, limit, allow_nan=False, allow_infinity=False)
    return hnp.arrays(np.float64, shape, elements=elements).map(torch.from_numpy)


def int_arrays(shape: Shape, limit: int) -> st.SearchStrategy[torch.Tensor]:
    """int64 tensors of ``shape`` with values in [-limit, limit]."""
    return hnp.arrays(np.int64, shape, elements=st.integers(-limit, limit)).map(torch.from_numpy)


@st.composite
def matmul_shapes(draw: st.DrawFn, max_side: int = 4, max_inner: int = 8) -> tuple[Shape, Shape]:
    """Operand shapes valid for torch.matmul: every vector/matrix/batched combination, with batch broadcasting."""
    m, p = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    k = draw(st.integers(1, max_inner))
    batch_a = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    # batch_b broadcasts against batch_a: each trailing dimension equal to batch_a's or 1, or batch_a's is 1.
    batch_b = tuple(draw(st.sampled_from(sorted({d, 1}))) for d in batch_a)
    batch_b = batch_b[draw(st.integers(0, len(batch_b))):]
    kind = draw(st.sampled_from(["vec@vec", "mat@vec", "vec@mat", "mat@mat", "batch@mat", "mat@batch",
                                 "batch@batch", "vec@batch", "batch@vec"]))
    left, right = kind.split("@")
    shape_a = {"vec": (k,), "mat": (m, k), "batch": (*batch_a, m, k) if batch_a else (2, m, k)}[left]
    shape_b = {"vec": (k,), "mat": (k, p), "batch": (*batch_b, k, p) if left == "batch" else (3, k, p)}[right]
    return shape_a, shape_b
