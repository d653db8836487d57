"""``check_range``: products and reveals that leave the safe fixed-point range raise ``RangeError`` instead of
wrapping silently.

A session made with ``check_range=True`` (``SessionOptions``, ``run_local``, ``Session.connect``) follows every
product of ``SharedTensor`` (``*``, ``@``, ``square``, ``/`` by a shared or public float, ``rescale``, and so every
layer of ``smpc.nn`` built on them) with a secure range test of the product before its truncation
(``protocols.additive.range``: only one bit, "some element is out of range", is opened, to every party, so every
party raises the same error at the same point and the session stays in step).  A reveal to every party checks
the opened values in the clear (they are public by then); a reveal to one party tests the shares first, since
only that party would see the values.  ``smpc train`` does not turn it on: it checks its inputs against the
schema's public scales, so its products stay in range by construction.

Not tested: sums (local; a sum outside the range is found by the product it enters or by its reveal), divisions
by a public integer (``/ n``, ``mean``: they only shrink a value), comparisons (exact for every ring element),
and the products inside the approximations (``exp``, ``sigmoid``, ...: their domains are in their docstrings).
Guarantee: a product is flagged whenever its exact value x y (for a matmul, the exact sum of an output's
terms) has |x y| >= 2^int_bits, unless it is so large that it wrapped all the way round the ring,
|x y| >= 2^(64 - 2 frac_bits) - 2^int_bits (about 4.3e9 by default: operands near 65,000 each, twice the range;
``protocols.additive.range``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fixedpoint import FixedPoint
from protocols.additive.range import out_of_range, truncate_checked
from protocols.family import Shares

if TYPE_CHECKING:
    from smpc.session import Session


class RangeError(OverflowError):
    """A value of a session with ``check_range`` left the safe fixed-point range |x| < 2^int_bits (a product
    before its truncation, or a revealed value); raised on every party alike.  An ``OverflowError`` (so an
    ``ArithmeticError``), not a ``ValueError``: the inputs were each valid, their result does not fit."""


def range_message(encoding: FixedPoint, subject: str) -> str:
    """The one line a ``RangeError`` says, naming what left the range (``subject``)."""
    return (f"{subject} left the safe range |x| < 2^{encoding.int_bits} (fixed point with {encoding.frac_bits} "
            "fractional bits); rescale the inputs")


def rescale_checked(session: Session, z: Shares, subject: str, divisor: int | None = None) -> Shares:
    """z (a product at double scale) truncated by ``divisor`` (default 2^frac_bits), after a secure test of
    |z| < 2^product_bits, the truncation's precondition (``protocols.additive.range.truncate_checked``).
    Raises ``RangeError`` naming ``subject`` on every party when some element is outside.  Cost: the test's 16
    rounds (6 in the replicated family up to 512 elements: its comparisons of up to 1,024 values take 3
    rounds), the truncation's, and one more to open the bit (1 in the replicated family to return both to
    replicated shares as well)."""
    truncated, flag = session.family.call(truncate_checked, z, divisor=divisor)
    raise_if_set(session, flag, subject)
    return truncated


def check_shared(session: Session, x: Shares, subject: str) -> None:
    """Secure test of |x| < 2^int_bits (at scale 2^frac_bits: |x| < 2^(int_bits + frac_bits) in the ring);
    ``RangeError`` on every party when some element is outside.  Cost: 16 rounds and one opening of a bit (and
    one round back to replicated shares in that family, where the 16 are 6 up to 512 elements)."""
    encoding = session.encoding
    flag = session.family.call(out_of_range, x, bound_bits=encoding.int_bits + encoding.frac_bits)
    raise_if_set(session, flag, subject)


def check_opened(encoding: FixedPoint, opened: torch.Tensor, subject: str) -> None:
    """The plain check of values every party has opened: ``RangeError`` when some |x| >= 2^int_bits."""
    limit = 1 << (encoding.int_bits + encoding.frac_bits)
    if opened.numel() and bool((opened.abs() >= limit).any() | (opened == torch.iinfo(torch.int64).min).any()):
        raise RangeError(range_message(encoding, subject))


def raise_if_set(session: Session, flag: Shares, subject: str) -> None:
    """Open the shared bit ``flag`` to every party (one round) and raise ``RangeError`` where it is 1."""
    opened = session.family.reveal(flag)
    assert opened is not None  # opened to every party
    if int(opened) != 0:
        raise RangeError(range_message(session.encoding, subject))
