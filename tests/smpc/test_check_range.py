"""``check_range``: a product or a reveal that leaves the safe range |x| < 2^int_bits raises ``RangeError`` on
every party, in both protocol families, instead of giving a silently wrapped number; in-range work gives the
values it gives without the check; the option is agreed in the handshake.

The range test of a product is made before its truncation, on the exact product of the encoded operands, so
the property test below compares it with the plain check |a b| >= 2^product_bits on Python integers with no
band around the bound: the test is exact (``protocols.additive.range.out_of_range``).
"""

from __future__ import annotations

import functools
import multiprocessing
from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import smpc
from protocols.additive.range import out_of_range
from smpc.cli import _parser
from tests.support.harness import REPLICATED, Parties, run_parties
from tests.support.nodes import Cluster, connect_all

FAMILIES = [Parties(3, "dealer"), REPLICATED]
#: The default encoding: 16 fractional bits, |x| < 2^15, products at double scale below 2^47.
FRAC_BITS, INT_BITS = 16, 15
PRODUCT_BITS = INT_BITS + 2 * FRAC_BITS
UNIT = 2.0 ** -FRAC_BITS
MUL_MESSAGE = ("the product of a mul left the safe range |x| < 2^15 (fixed point with 16 fractional bits); "
               "rescale the inputs")


def _attempt(compute: Any) -> Any:
    """The value ``compute()`` returns, or the RangeError's message."""
    try:
        return compute()
    except smpc.RangeError as error:
        return f"RangeError: {error}"


def _shared(session: smpc.Session, value: Any, owner: int) -> smpc.SharedTensor:
    return session.share(value if session.rank == owner else None, owner=owner)


# -- the wrap of the issue ---------------------------------------------------------------------------------
def _sixty_thousand_squared(session: smpc.Session) -> dict[str, Any]:
    """60000 * 60000, with 60000 made as 30000 + 30000 (a sum may leave the range; the product wraps), then
    ordinary work in the same session: every party must still be in step after the error."""
    half = _shared(session, torch.full((16,), 30000.0), 0)
    other = _shared(session, torch.tensor([1.5]), 1)
    x = half + half
    return {"product": _attempt(lambda: (x * x).reveal()), "after": (other * other).reveal()}


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_the_wrapping_product_raises_range_error_naming_mul_on_every_party(parties: Parties) -> None:
    checked = run_parties(_sixty_thousand_squared, parties, check_range=True)
    for result in checked:
        assert result["product"] == f"RangeError: {MUL_MESSAGE}"
        assert abs(float(result["after"]) - 2.25) <= UNIT
    # Without the check the same program reveals the wrapped number the issue saw: 60000^2 2^32 modulo 2^64
    # is -6.9e8 2^32.  (The truncation of such a product is itself off by 2^48 units in about one element in
    # six, which lands on 3.6e9 by accident; 16 elements make "none wrapped" a 1e-13 event.)
    for result in run_parties(_sixty_thousand_squared, parties):
        product = result["product"]
        assert isinstance(product, torch.Tensor), product
        assert bool(((product + 6.9497e8).abs() < 1e4).any()), product


def _share_sixty_thousand(session: smpc.Session) -> str:
    x = _shared(session, torch.tensor([60000.0]), 0)
    return _attempt(lambda: (x * x).reveal())


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_with_int_bits_16_the_inputs_are_valid_and_their_product_is_refused(parties: Parties) -> None:
    """int_bits=16 admits 60000 as an input; its square leaves |x| < 2^16 and is refused on every party."""
    for outcome in run_parties(_share_sixty_thousand, parties, check_range=True, int_bits=16):
        assert outcome == ("RangeError: the product of a mul left the safe range |x| < 2^16 (fixed point with 16 "
                           "fractional bits); rescale the inputs")


# -- in range: the same values as without the check --------------------------------------------------------
A = torch.tensor([[1.5, -2.25, 100.0], [0.5, 40.0, -1.0]], dtype=torch.float64)
B = torch.tensor([[2.0, 0.5], [-1.5, 1.0], [0.25, -3.0]], dtype=torch.float64)


def _in_range_work(session: smpc.Session) -> dict[str, torch.Tensor]:
    a, b = _shared(session, A, 0), _shared(session, B, 1)
    results = {
        "mul": a * a, "square": a.square(), "matmul": a @ b, "mul public float": a * 2.5,
        "mul public int": a * -3, "matmul public float": a @ B, "public matmul": B.T @ a.T,
        "matmul public int": a @ torch.ones(3, 2, dtype=torch.int64), "divide": a / b.T,
        "rescale": a.mul_unscaled(a).sum(1).rescale(),
    }
    revealed = {name: value.reveal() for name, value in results.items()}
    revealed["to one"] = a.reveal(to=2)
    return revealed


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
def test_in_range_products_pass_and_agree_with_the_unchecked_session(parties: Parties) -> None:
    expected = {
        "mul": A * A, "square": A * A, "matmul": A @ B, "mul public float": A * 2.5, "mul public int": A * -3,
        "matmul public float": A @ B, "public matmul": B.T @ A.T, "matmul public int": A @ torch.ones(3, 2).double(),
        "divide": A / B.T, "rescale": (A * A).sum(1),
    }
    checked = run_parties(_in_range_work, parties, check_range=True)
    unchecked = run_parties(_in_range_work, parties)
    for rank in range(3):
        for name, value in expected.items():
            tolerance = 1e-3 * value.abs() + 1e-2 if name == "divide" else torch.full_like(value, 4 * UNIT)
            assert torch.all((checked[rank][name] - value).abs() <= tolerance), name
            # Each truncation is floor or floor + 1 of the same exact product, in either session.
            limit = 0.02 if name == "divide" else 2 * UNIT
            assert torch.all((checked[rank][name] - unchecked[rank][name]).abs() <= limit), name
        assert (checked[rank]["to one"] is None) == (rank != 2)
    assert torch.equal(checked[2]["to one"], A)


# -- out of range: every kind of product, and reveals ------------------------------------------------------
def _out_of_range(kind: str, session: smpc.Session) -> str:
    x = _shared(session, torch.full((2, 4), 100.0), 0)
    big = _shared(session, torch.tensor([20000.0, 1.0]), 1)
    compute = {
        "matmul": lambda: x @ x.T,  # 4 * 100 * 100 = 40000
        "matmul public float": lambda: x @ torch.full((4, 1), 100.0, dtype=torch.float64),
        "matmul public int": lambda: x @ torch.full((4, 1), 100, dtype=torch.int64),
        "mul public float": lambda: big * 2.0,
        "mul public int": lambda: big * 2,
        "rescale": lambda: big.mul_unscaled(big).rescale(),
        "reveal": lambda: (big + big).reveal(),
        "reveal to one": lambda: (big + big).reveal(to=1),
    }[kind]
    outcome = _attempt(compute)
    after = (x[0, :2] * 0.5).reveal()
    assert bool(((after - 50.0).abs() <= UNIT).all()), after  # every party still in step after the error
    return outcome


SUBJECTS = {
    "matmul": "the product of a matmul", "matmul public float": "the product of a matmul",
    "matmul public int": "the product of a matmul", "mul public float": "the product of a mul",
    "mul public int": "the product of a mul", "rescale": "the input of a rescale",
    "reveal": "the value of a reveal", "reveal to one": "the value of a reveal",
}


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
@pytest.mark.parametrize("kind", list(SUBJECTS))
def test_every_kind_of_product_and_reveal_out_of_range_raises_on_every_party(parties: Parties, kind: str) -> None:
    for outcome in run_parties(functools.partial(_out_of_range, kind), parties, check_range=True):
        assert outcome == (f"RangeError: {SUBJECTS[kind]} left the safe range |x| < 2^15 (fixed point with 16 "
                           "fractional bits); rescale the inputs"), outcome


def test_range_error_is_an_overflow_error_exported_from_smpc() -> None:
    assert issubclass(smpc.RangeError, OverflowError) and issubclass(smpc.RangeError, ArithmeticError)
    assert not issubclass(smpc.RangeError, ValueError)
    assert "RangeError" in smpc.__all__


# -- the bit equals the plain check ------------------------------------------------------------------------
def _ring(value: int) -> int:
    """A Python integer as the signed 64-bit ring element it is modulo 2^64."""
    value %= 1 << 64
    return value - (1 << 64) if value >> 63 else value


def _bits_of(values: list[int], bound_bits: int, session: smpc.Session) -> list[int]:
    """out_of_range on each ring value alone, then on all together: the opened bits."""
    shared = session.family.share(torch.tensor(values, dtype=torch.int64) if session.rank == 0 else None, 0)
    flags = [session.family.call(out_of_range, tuple(part[i] for part in shared), bound_bits=bound_bits)
             for i in range(len(values))]
    flags.append(session.family.call(out_of_range, shared, bound_bits=bound_bits))
    return [int(session.family.reveal(flag)) for flag in flags]


_NEAR = st.integers(-3, 3)


@st.composite
def _ring_values(draw: st.DrawFn) -> list[int]:
    """Ring values at the bound (+-2^b + small), at the ends of the ring, and anywhere."""
    bound = 1 << PRODUCT_BITS
    near_bound = st.builds(lambda sign, delta: sign * bound + delta, st.sampled_from([-1, 1]), _NEAR)
    ends = st.builds(lambda end, delta: _ring(end + delta), st.sampled_from([1 << 63, (1 << 63) - 1]), _NEAR)
    anywhere = st.integers(-(1 << 63), (1 << 63) - 1)
    return draw(st.lists(st.one_of(near_bound, near_bound, ends, anywhere, _NEAR), min_size=1, max_size=6))


#: Every ring value at and next to the bound and the ends of the ring, checked on every run.
_EDGES = [(1 << PRODUCT_BITS) + d for d in (-1, 0, 1)] + [-(1 << PRODUCT_BITS) + d for d in (-1, 0, 1)]
_ENDS = [-(1 << 63), -(1 << 63) + 1, (1 << 63) - 1, 0]


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
@given(values=_ring_values())
@example(values=_EDGES).via("the bound itself")
@example(values=_ENDS).via("the ends of the ring")
def test_the_range_bit_equals_the_plain_check_near_the_bound(parties: Parties, values: list[int]) -> None:
    """Exact for every ring element: no band around the bound is excluded."""
    plain = [int(abs(v) >= 1 << PRODUCT_BITS) for v in values]
    for bits in run_parties(functools.partial(_bits_of, values, PRODUCT_BITS), parties):
        assert bits == plain + [int(any(plain))]


def _products(pairs: list[tuple[int, int]], session: smpc.Session) -> list[bool]:
    """Each encoded pair multiplied under check_range: whether a RangeError was raised."""
    raised = []
    for a, b in pairs:
        x = _shared(session, torch.tensor([a * UNIT], dtype=torch.float64), 0)
        y = _shared(session, torch.tensor([b * UNIT], dtype=torch.float64), 1)
        try:
            x * y
        except smpc.RangeError:
            raised.append(True)
        else:
            raised.append(False)
    return raised


@st.composite
def _pairs_near_the_bound(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Encoded operands (|a|, |b| < 2^31, values in range) whose exact product is within a few ulps of
    +-2^47: a is drawn, b is the nearest integer to 2^47 / a, moved by a small delta."""
    pairs = []
    for _ in range(draw(st.integers(1, 4))):
        a = draw(st.integers(1 << 16, (1 << 31) - 1)) * draw(st.sampled_from([-1, 1]))
        b = (1 << PRODUCT_BITS) // a + draw(_NEAR)
        b = max(-(1 << 31) + 1, min((1 << 31) - 1, b)) * draw(st.sampled_from([-1, 1]))
        pairs.append((a, b))
    return pairs


#: Products exactly at the bound: 2^47 - 1 = (2351 * 4513) * 13264529 passes, 2^17 * 2^30 = 2^47 does not.
_AT_THE_BOUND = [(2351 * 4513, 13264529), (-(2351 * 4513), 13264529), (1 << 17, 1 << 30), (1 << 30, -(1 << 17))]


@pytest.mark.parametrize("parties", FAMILIES, ids=repr)
@given(pairs=_pairs_near_the_bound())
@example(pairs=_AT_THE_BOUND).via("products at the bound")
def test_a_product_raises_exactly_when_the_plain_check_fails(parties: Parties, pairs: list[tuple[int, int]]) -> None:
    """RangeError exactly when |a b| >= 2^product_bits for the encoded operands a, b (Python integers)."""
    plain = [abs(a * b) >= 1 << PRODUCT_BITS for a, b in pairs]
    for raised in run_parties(functools.partial(_products, pairs), parties, check_range=True):
        assert raised == plain


# -- costs, agreement ---------------------------------------------------------------------------------------
def _rounds_of_a_checked_mul(session: smpc.Session) -> int:
    x = _shared(session, torch.rand(50), 0)
    before = session.stats.rounds
    x * x
    return session.stats.rounds - before


@pytest.mark.parametrize(("parties", "rounds"), [(FAMILIES[0], 19), (FAMILIES[1], 10)], ids=repr)
def test_a_checked_mul_takes_the_rounds_its_docstrings_add_up_to(parties: Parties, rounds: int) -> None:
    """Dealer family: Beaver 1 + truncation 1 + two comparisons 16 + the bit 1.  Replicated: resharing 1 +
    truncation 1 + two helped comparisons 6 (up to 1,024 elements each) + back to replicated shares 1 + the
    bit 1."""
    assert run_parties(_rounds_of_a_checked_mul, parties, check_range=True) == [rounds] * 3


def test_check_range_is_agreed_in_the_handshake() -> None:
    """A node with check_range and one without refuse each other, naming the field, on both sides."""
    options = [smpc.SessionOptions(n_parties=2, check_range=flag) for flag in (True, False)]
    assert options[0].handshake()["check_range"] is True and options[1].handshake()["check_range"] is False
    cluster = Cluster()
    try:
        nodes = [cluster.node(rank, 2, handshake=options[rank].handshake()) for rank in range(2)]
        errors = connect_all(nodes)
    finally:
        cluster.close()
    assert isinstance(errors[0], smpc.HandshakeError)
    assert "party 1 has check_range=false, we have check_range=true" in str(errors[0])
    assert isinstance(errors[1], smpc.HandshakeError)
    assert "party 0 has check_range=true, we have check_range=false" in str(errors[1])


def test_the_dealer_command_takes_check_range() -> None:
    """`smpc dealer --check-range` serves sessions whose parties joined with check_range=True."""
    arguments = ["dealer", "--roster", "roster.json", "--key", "dealer.key"]
    assert _parser().parse_args([*arguments, "--check-range"]).check_range is True
    assert _parser().parse_args(arguments).check_range is False


def _over_processes(session: smpc.Session) -> str:
    half = _shared(session, torch.tensor([30000.0]), 0)
    return _attempt(lambda: ((half + half) * (half + half)).reveal())


@pytest.mark.processes
def test_range_error_over_processes_with_a_dealer() -> None:
    """Three parties and a dealer as processes over CurveZMQ, every node agreeing check_range: each party
    raises the same RangeError and the run leaves no process behind."""
    outcomes = run_parties(_over_processes, 3, transport="zmq", check_range=True)
    assert outcomes == [f"RangeError: {MUL_MESSAGE}"] * 3
    assert multiprocessing.active_children() == []
