"""fixedpoint.encoding: round trip within the stated error, refusals with clear messages, parameter checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fixedpoint import FixedPoint
from tests.support.checks import FLOAT_SLACK


def encoding_error(encoding: FixedPoint) -> float:
    """Stated encoding error e = 2^-(frac_bits+1)."""
    return math.ldexp(1.0, -(encoding.frac_bits + 1))


@st.composite
def valid_encodings(draw: st.DrawFn) -> FixedPoint:
    """Any FixedPoint the docstring allows: 0 <= frac_bits <= 30, int_bits >= 1, int_bits + 2 frac_bits <= 61."""
    frac_bits = draw(st.integers(0, 30))
    int_bits = draw(st.integers(1, 61 - 2 * frac_bits))
    return FixedPoint(frac_bits=frac_bits, int_bits=int_bits)


@st.composite
def encodings_and_values(draw: st.DrawFn) -> tuple[FixedPoint, list[float]]:
    """A valid encoding and a list of finite values strictly inside its range."""
    encoding = draw(valid_encodings())
    # The largest float that rounds to an encoding strictly below 2^int_bits (half a unit below it rounds up).
    limit = math.nextafter(encoding.max_abs - encoding.resolution / 2, 0.0)
    values = draw(st.lists(st.floats(-limit, limit, allow_nan=False, allow_infinity=False), min_size=1, max_size=64))
    return encoding, values


#: The input types ``encode`` documents (ArrayLike), each built from a list of Python floats.
CONTAINERS = {
    "float64 tensor": lambda values: torch.tensor(values, dtype=torch.float64),
    "numpy float64": lambda values: np.array(values, dtype=np.float64),
    "list": list,
    "tuple": tuple,
}


@pytest.mark.parametrize("container", sorted(CONTAINERS))
@given(case=encodings_and_values())
def test_round_trip_within_half_resolution(container: str, case: tuple[FixedPoint, list[float]]) -> None:
    """decode(encode(v)) is within e = 2^-(frac_bits+1) of v, for every valid encoding, every in-range v and
    every documented input type (a Python float is a float64: it must not lose precision on the way)."""
    encoding, values = case
    encoded = encoding.encode(CONTAINERS[container](values))
    assert encoded.dtype == torch.int64
    assert encoded.shape == (len(values),)
    error = (encoding.decode(encoded) - torch.tensor(values, dtype=torch.float64)).abs()
    assert float(error.max()) <= encoding_error(encoding) + FLOAT_SLACK


@pytest.mark.parametrize("value", [1000.1, -12345.678, 0.1 + 2**10])
def test_python_float_is_encoded_at_float64_precision(value: float) -> None:
    """A Python float (scalar or in a list) round-trips within e, as a float64 tensor of it does."""
    encoding = FixedPoint()
    bound = encoding_error(encoding) + FLOAT_SLACK
    assert abs(float(encoding.decode(encoding.encode(torch.tensor(value, dtype=torch.float64)))) - value) <= bound
    assert abs(float(encoding.decode(encoding.encode(value))) - value) <= bound
    assert abs(float(encoding.decode(encoding.encode([value]))[0]) - value) <= bound


@given(valid_encodings(), st.lists(st.integers(-(1 << 20), 1 << 20), min_size=1, max_size=32))
def test_multiples_of_the_resolution_are_exact(encoding: FixedPoint, units: list[int]) -> None:
    """Values k * 2^-frac_bits inside the range encode to exactly k and decode back exactly."""
    limit = (1 << (encoding.int_bits + encoding.frac_bits)) - 1
    ints = torch.tensor([max(-limit, min(limit, u)) for u in units], dtype=torch.int64)
    values = ints.to(torch.float64) / encoding.scale
    assert torch.equal(encoding.encode(values), ints)
    assert torch.equal(encoding.decode(ints), values)


def test_encode_accepts_numbers_lists_arrays_and_tensors() -> None:
    """Python numbers, lists, numpy arrays and tensors encode alike; negatives use two's complement."""
    encoding = FixedPoint()
    expected = torch.tensor([98304, -32768], dtype=torch.int64)  # 1.5 * 2^16, -0.5 * 2^16
    for value in ([1.5, -0.5], (1.5, -0.5), np.array([1.5, -0.5]), torch.tensor([1.5, -0.5], dtype=torch.float32)):
        assert torch.equal(encoding.encode(value), expected)
    assert int(encoding.encode(2)) == 2 << 16
    assert encoding.encode([]).numel() == 0


@pytest.mark.parametrize("bad, word", [(math.nan, "NaN"), (math.inf, "infinite"), (-math.inf, "infinite")])
def test_encode_refuses_non_finite(bad: float, word: str) -> None:
    """NaN, +inf and -inf raise ValueError naming the problem, also when mixed with finite values."""
    encoding = FixedPoint()
    with pytest.raises(ValueError, match=word):
        encoding.encode(bad)
    with pytest.raises(ValueError, match=word):
        encoding.encode(torch.tensor([1.0, bad, 2.0]))


@given(valid_encodings(), st.floats(1.0, 1e30), st.booleans())
def test_encode_refuses_values_outside_the_range(encoding: FixedPoint, factor: float, negative: bool) -> None:
    """|v| >= 2^int_bits raises ValueError with a message giving the range and what to do."""
    value = encoding.max_abs * factor * (-1.0 if negative else 1.0)
    with pytest.raises(ValueError, match=r"outside the safe fixed-point range.*int_bits"):
        encoding.encode(torch.tensor([0.0, value], dtype=torch.float64))


def test_range_boundary() -> None:
    """The bound holds for what is stored: 2^15 - 2^-16 is the largest magnitude accepted (default 2^15 = 32768),
    and a value just below 2^15 that rounds to 2^15 is refused like 2^15 itself."""
    encoding = FixedPoint()
    assert encoding.max_abs == 32768.0
    largest = 32768.0 - 2.0**-16
    below = math.nextafter(32768.0 - 2.0**-17, 0.0)  # rounds down to the largest
    edge = torch.tensor([largest, -largest, below, -below], dtype=torch.float64)
    decoded = encoding.decode(encoding.encode(edge))
    assert float((decoded - edge).abs().max()) <= encoding_error(encoding)
    assert float(decoded.abs().max()) < 32768.0
    for edge in (32768.0, -32768.0, 32767.999995, -32767.999995, math.nextafter(32768.0, 0.0)):
        with pytest.raises(ValueError, match="outside the safe fixed-point range"):
            encoding.encode(edge)


@given(valid_encodings(), st.floats(0.0, 1.0))
def test_every_accepted_value_decodes_inside_the_range(encoding: FixedPoint, fraction: float) -> None:
    """Near the top of the range, whatever encode accepts decodes to |v| < 2^int_bits (checked after rounding)."""
    value = encoding.max_abs - fraction * encoding.resolution
    try:
        encoded = encoding.encode(value)
    except ValueError:
        assert round(value * encoding.scale) >= 1 << (encoding.int_bits + encoding.frac_bits)
        return
    assert abs(float(encoding.decode(encoded))) < encoding.max_abs


def test_encode_refuses_complex_and_decode_refuses_non_int64() -> None:
    """Complex values and non-ring dtypes are refused."""
    encoding = FixedPoint()
    with pytest.raises(ValueError, match="complex"):
        encoding.encode(torch.tensor([1 + 2j]))
    with pytest.raises(TypeError, match="int64"):
        encoding.decode(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="int64"):
        encoding.decode(torch.tensor([1], dtype=torch.int32))


def test_encode_int() -> None:
    """Exact integers scale by 2^frac_bits; floats and overflowing integers are refused."""
    encoding = FixedPoint()
    assert torch.equal(encoding.encode_int(torch.tensor([3, -4])), torch.tensor([3 << 16, -4 << 16]))
    with pytest.raises(ValueError):
        encoding.encode_int(torch.tensor([1.0]))
    with pytest.raises(ValueError):
        encoding.encode_int(torch.tensor([1 << (63 - 16)]))


@given(st.integers(-5, 40), st.integers(-5, 70))
def test_fixed_point_validation(frac_bits: int, int_bits: int) -> None:
    """FixedPoint accepts exactly 0 <= frac_bits <= 30, int_bits >= 1 and int_bits + 2*frac_bits <= 61."""
    valid = 0 <= frac_bits <= 30 and int_bits >= 1 and int_bits + 2 * frac_bits <= 61
    if valid:
        encoding = FixedPoint(frac_bits=frac_bits, int_bits=int_bits)
        assert encoding.scale == 1 << frac_bits
        assert encoding.resolution == 2.0**-frac_bits
        assert encoding.max_abs == 2.0**int_bits
        assert encoding.product_bits == int_bits + 2 * frac_bits
    else:
        with pytest.raises(ValueError, match="frac_bits|int_bits"):
            FixedPoint(frac_bits=frac_bits, int_bits=int_bits)


def test_fixed_point_validation_messages() -> None:
    """The 61-bit rule and the type checks say what is wrong."""
    FixedPoint(frac_bits=23, int_bits=15)  # 15 + 46 = 61: allowed
    with pytest.raises(ValueError, match=r"int_bits \+ 2\*frac_bits must be <= 61"):
        FixedPoint(frac_bits=23, int_bits=16)
    with pytest.raises(ValueError, match="frac_bits"):
        FixedPoint(frac_bits=16.0, int_bits=15)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int_bits"):
        FixedPoint(frac_bits=16, int_bits=0)


def test_default_and_failure_probabilities() -> None:
    """Defaults are frac_bits=16, int_bits=15; the local shift's failure probability is 2^(product_bits+1-64)."""
    encoding = FixedPoint()
    assert (encoding.frac_bits, encoding.int_bits, encoding.product_bits) == (16, 15, 47)
    assert encoding.local_shift_failure_probability() == 2.0**-16


# -- integer inputs: exact integers ------------------------------------------------------------------------
@given(valid_encodings(), st.data())
def test_integers_encode_exactly_and_round_trip(encoding: FixedPoint, data: st.DataObject) -> None:
    """Any integer with |k| < 2^int_bits is stored as exactly k * 2^frac_bits (no float on the way, so even
    int_bits = 61 keeps every unit) and decodes to k; one step beyond the bound is refused."""
    limit = 1 << encoding.int_bits
    ints = data.draw(st.lists(st.integers(-limit + 1, limit - 1), min_size=1, max_size=16), label="ints")
    encoded = encoding.encode(torch.tensor(ints, dtype=torch.int64))
    assert encoded.tolist() == [k << encoding.frac_bits for k in ints]
    assert encoding.encode(np.array(ints, dtype=np.int64)).tolist() == encoded.tolist()
    if encoding.int_bits + encoding.frac_bits <= 53:  # float64 decodes exactly up to 2^53
        assert encoding.decode(encoded).tolist() == [float(k) for k in ints]
    outside = data.draw(st.sampled_from([limit, -limit]), label="outside")
    with pytest.raises(ValueError, match=f"integer {outside} is outside the safe fixed-point range"):
        encoding.encode(torch.tensor([*ints, outside], dtype=torch.int64))


@pytest.mark.parametrize("value", [
    torch.tensor([32768]), torch.tensor([-32768]), torch.tensor([1 << 62]), torch.tensor([-(1 << 63)]),
    torch.tensor([(1 << 64) - 1], dtype=torch.uint64), np.array([1 << 63], dtype=np.uint64),
    torch.tensor([40000], dtype=torch.int32), np.array([-40000], dtype=np.int32),
], ids=lambda value: f"{value.dtype}:{value.tolist()[0]}")
def test_integers_outside_the_range_are_refused_never_wrapped(value: torch.Tensor | np.ndarray) -> None:
    """|k| >= 2^int_bits is refused with one line naming the integer exactly (uint64 values of 2^63 and more
    would turn negative in an int64: they are compared before any conversion)."""
    with pytest.raises(ValueError, match=rf"^integer {value.tolist()[0]} is outside the safe fixed-point range "
                                         r"\|v\| < 2\^15 = 32768; integers are encoded exactly as k \* 2\^16"):
        FixedPoint().encode(value)


def test_small_integer_dtypes_and_bools_are_integers() -> None:
    encoding = FixedPoint()
    for value in (torch.tensor([-3, 7], dtype=torch.int8), torch.tensor([250, 7], dtype=torch.uint8),
                  np.array([-3, 7], dtype=np.int16), np.array([65535 >> 2, 7], dtype=np.uint16)):
        assert encoding.encode(value).tolist() == [int(k) << 16 for k in value.tolist()]
    assert encoding.encode(torch.tensor([True, False])).tolist() == [1 << 16, 0]
    assert encoding.encode(np.array([True, False])).tolist() == [1 << 16, 0]
