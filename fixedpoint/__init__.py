"""Fixed-point encoding and exact Z_2^64 arithmetic.  Pure functions: no I/O, no state, nothing at import."""

from fixedpoint.encoding import RING_BITS, FixedPoint
from fixedpoint.ring import logical_shift_right, ring_matmul, ring_matmul_add

__all__ = ["RING_BITS", "FixedPoint", "logical_shift_right", "ring_matmul", "ring_matmul_add"]
