"""The trusted dealer's correlated randomness, seed-compressed, and the party side that consumes it.

The dealer is its own process (node ``n`` of the transport), never a computing party.  It shares one PRG key
with each party.  For request number ``t`` every party expands its key's stream ``t`` into its shares of the
random values; the dealer expands all n streams, so it knows the secrets, and sends the *last* party the single
correction share that makes the correlation hold.  Only that one share crosses the network; the dealer never
receives an opened value or a share of data, only the kind and shape of what to make.

Kinds of correlated randomness (``a``, ``b``, ``c`` are what each party gets; "+" additive shares over
Z_2^64, "^" XOR shares of 64-bit words):
  * ``MUL``: Beaver triple +a (shape x), +b (shape y), +c = a * b (broadcast shape).
  * ``MATMUL``: matrix triple +A, +B, +C = A @ B (torch.matmul shapes, batched too).
  * ``TRUNC``: +r (uniform in Z_2^64, read unsigned) in ``a``; in ``c``, stacked on a new first axis,
    +s = floor(r / d) and +u = MSB(r) * (s + ceil((2^64 - r) / d)) mod 2^64, for a public divisor d >= 2
    (``protocols.additive.truncation`` uses u to correct, without a second opening, the rare masked sum that wrapped).
  * ``MASK_BITS``: +r and ^r: one uniform r, both additively shared and XOR-shared (for comparisons).
  * ``AND``: binary triple ^a (shape x), ^b (shape y), ^c = a & b (broadcast shape).
  * ``BIT``: a uniform bit rho, XOR-shared in bit 0 of ``a`` and additively shared in ``c``.
  * ``COMPARE``: only from an online helper (``protocols.additive.helped``), never from the dealer process: +r
    in ``a``, party 0's share of the helper's answer in ``b``, and shares modulo 67 of r's 63 low bits in ``c``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fixedpoint import ring_matmul
from network import PeerClosedError, ProtocolError, Transport
from protocols.party import Party
from protocols.prg import AesCtrPrg

MUL, MATMUL, TRUNC, MASK_BITS, AND, BIT, COMPARE = 1, 2, 3, 4, 5, 6, 7
#: Not a kind of randomness: a plan, asking the dealer to make a recorded list of requests ahead of time.
PLAN = 99
#: Cap on the correction elements one plan may ask for (512 MiB of corrections queued at the last party).
MAX_PLAN_ELEMENTS = 1 << 26
_KIND_NAMES = {
    MUL: "Beaver triple",
    MATMUL: "matrix triple",
    TRUNC: "truncation pair",
    MASK_BITS: "masked bits",
    AND: "binary triple",
    BIT: "random bit",
    COMPARE: "helper comparison",
}
#: Kinds whose a and b are XOR-shared, and kinds whose c is XOR-shared; every other share is additive.
_XOR_INPUTS = frozenset({AND})
_XOR_OUTPUTS = frozenset({MASK_BITS, AND})
#: Cap on the elements one request may ask for (protects the dealer's memory from a confused party).
MAX_REQUEST_ELEMENTS = 1 << 27


@dataclass(frozen=True)
class Request:
    """What the dealer is asked for: a kind, an integer parameter (the divisor of TRUNC) and two shapes."""

    kind: int
    param: int
    shape_x: tuple[int, ...]
    shape_y: tuple[int, ...] = ()

    def encode(self) -> np.ndarray:
        return np.array(
            [self.kind, self.param, len(self.shape_x), *self.shape_x, len(self.shape_y), *self.shape_y],
            dtype=np.int64,
        )

    @staticmethod
    def decode(array: np.ndarray) -> Request:
        """Parse and validate a request; raises ProtocolError on anything malformed."""
        values = [int(v) for v in np.asarray(array, dtype=np.int64).reshape(-1)]
        try:
            kind, param, nx = values[0], values[1], values[2]
            shape_x = tuple(values[3 : 3 + nx])
            ny = values[3 + nx]
            shape_y = tuple(values[4 + nx : 4 + nx + ny])
            if len(values) != 4 + nx + ny or len(shape_x) != nx or len(shape_y) != ny:
                raise ValueError("length")
        except (IndexError, ValueError):
            raise ProtocolError("malformed dealer request") from None
        if kind not in _KIND_NAMES:
            raise ProtocolError(f"unknown dealer request kind {kind}")
        if nx > 8 or ny > 8 or any(d < 0 for d in shape_x + shape_y):
            raise ProtocolError("dealer request with an invalid shape")
        if kind == TRUNC and param < 2:
            raise ProtocolError("truncation divisor must be >= 2")
        if kind == COMPARE and (nx != 1 or ny != 0):
            raise ProtocolError("a helper comparison is asked for a vector of elements")
        request = Request(kind, param, shape_x, shape_y)
        if any(_numel(s) > MAX_REQUEST_ELEMENTS for s in (shape_x, shape_y)):
            raise ProtocolError(f"dealer request for more than {MAX_REQUEST_ELEMENTS} elements")
        try:
            shapes = request.output_shapes()
        except ValueError:  # broadcast_shape, matmul_shape
            raise ProtocolError(f"dealer request with incompatible shapes {shape_x} and {shape_y}") from None
        if sum(_numel(s) for s in shapes) > MAX_REQUEST_ELEMENTS:
            raise ProtocolError(f"dealer request for more than {MAX_REQUEST_ELEMENTS} elements")
        return request

    def output_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Shapes of the three values: (a, b, c) for triples, (r, unused, (s, u) stacked) for TRUNC."""
        if self.kind in (MUL, AND):
            return self.shape_x, self.shape_y, broadcast_shape(self.shape_x, self.shape_y)
        if self.kind == MATMUL:
            return self.shape_x, self.shape_y, matmul_shape(self.shape_x, self.shape_y)
        if self.kind == TRUNC:
            return self.shape_x, (0,), (2, *self.shape_x)
        if self.kind == COMPARE:
            return self.shape_x, self.shape_x, (*self.shape_x, 63)
        return self.shape_x, (0,), self.shape_x


def broadcast_shape(x: Sequence[int], y: Sequence[int]) -> tuple[int, ...]:
    """torch's broadcasting of two shapes, in plain Python (torch.broadcast_shapes costs about 90 us a call,
    and every request asks); ValueError where they do not broadcast."""
    length = max(len(x), len(y))
    padded_x, padded_y = (1,) * (length - len(x)) + tuple(x), (1,) * (length - len(y)) + tuple(y)
    out = []
    for a, b in zip(padded_x, padded_y):
        if a != b and 1 not in (a, b):
            raise ValueError(f"shapes {tuple(x)} and {tuple(y)} do not broadcast")
        out.append(b if a == 1 else a)
    return tuple(out)


def matmul_shape(x: Sequence[int], y: Sequence[int]) -> tuple[int, ...]:
    """The shape of torch.matmul(x, y) for operands of shapes x and y (vectors, matrices, batched), in plain
    Python; ValueError where torch.matmul would refuse them."""
    if not x or not y:
        raise ValueError("matmul needs at least 1-D operands")
    left = (1, *x) if len(x) == 1 else tuple(x)
    right = (*y, 1) if len(y) == 1 else tuple(y)
    if left[-1] != right[-2]:
        raise ValueError(f"matmul shapes {tuple(x)} and {tuple(y)} do not match")
    out = [*broadcast_shape(left[:-2], right[:-2]), left[-2], right[-1]]
    if len(y) == 1:
        out.pop(-1)
    if len(x) == 1:
        out.pop(-2 if len(y) > 1 else -1)
    return tuple(out)


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def expand_parts(prg: AesCtrPrg, stream: int, shapes: Sequence[tuple[int, ...]], party: Party | None = None
            ) -> list[torch.Tensor]:
    """Cut one PRG stream into tensors of the given shapes, in order (on ``party``'s device if given)."""
    sizes = [_numel(s) for s in shapes]
    flat = prg.ring(stream, sum(sizes)) if party is None else party.expand(prg, stream, sum(sizes))
    return [part.reshape(shape) for part, shape in zip(torch.split(flat, sizes), shapes)]


def _combine(request: Request, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The correlated value from the reconstructed a and b."""
    kind = request.kind
    if kind == MUL:
        return a * b
    if kind == MATMUL:
        return ring_matmul(a, b)
    if kind == AND:
        return a & b
    if kind == MASK_BITS:
        return a
    if kind == BIT:
        return a & 1
    return torch.stack(truncation_values(a, request.param))


def truncation_values(r: torch.Tensor, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, u) of a TRUNC pair for the mask r: s = floor(r / d) and u = MSB(r) (s + ceil((2^64 - r) / d)),
    r read as unsigned, all modulo 2^64 as int64.  For d = 2^f, s + ceil((2^64 - r) / d) is exactly 2^(64-f)
    (r/d and (2^64 - r)/d add up to that integer), so u = MSB(r) 2^(64-f): two shifts instead of a division,
    a remainder and four more passes."""
    unsigned = r.numpy().view(np.uint64)
    s = unsigned_divide(unsigned, divisor)
    if divisor > 1 and divisor & (divisor - 1) == 0:
        u = (unsigned >> np.uint64(63)) << np.uint64(64 - (divisor.bit_length() - 1))
        return torch.from_numpy(s.view(np.int64)), torch.from_numpy(u.view(np.int64))
    # 2^64 - r as unsigned is (-r) mod 2^64 (r = 0 only has MSB 0, where u is 0 anyway).
    complement = (-r).numpy().view(np.uint64)
    ceil_complement = unsigned_divide(complement, divisor) + (unsigned_remainder(complement, divisor) != 0)
    high = (unsigned >> np.uint64(63)).astype(np.uint64)
    u = high * (s + ceil_complement)
    return torch.from_numpy(s.view(np.int64)), torch.from_numpy(u.view(np.int64))


def unsigned_divide(values: np.ndarray, divisor: int) -> np.ndarray:
    """floor(values / divisor) for uint64 values: a shift where the divisor is a power of two (every fixed-point
    rescale), which numpy does several times faster than its 64-bit division."""
    if divisor & (divisor - 1) == 0:
        return values >> np.uint64(divisor.bit_length() - 1)
    return values // np.uint64(divisor)


def unsigned_remainder(values: np.ndarray, divisor: int) -> np.ndarray:
    """values mod divisor for uint64 values (a mask where the divisor is a power of two)."""
    if divisor & (divisor - 1) == 0:
        return values & np.uint64(divisor - 1)
    return values % np.uint64(divisor)


def dealer_correction(prgs: Sequence[AesCtrPrg], stream: int, request: Request) -> torch.Tensor:
    """The last party's share of the correlated value for request ``stream``; see ``dealer_material``."""
    return dealer_material(prgs, stream, request)[1]


def dealer_material(prgs: Sequence[AesCtrPrg], stream: int, request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, the last party's correction) for request ``stream``: a is the reconstructed first value (the mask r
    of a truncation pair, which a helper that knows it may use); runs in the dealer (or helper) only.

    Steps:
      1. For each party i, expand stream ``stream`` of its key into its shares (a_i, b_i[, c_i]); the last
         party's stream holds only (a_i, b_i), its c share is this correction.
      2. a = sum a_i, b = sum b_i; c = combine(a, b).
      3. Return c - sum_{i < last} c_i.
    Cost: n PRG expansions and one combine; 8 bytes per element of c sent to the last party.
    """
    if request.kind == COMPARE:  # it needs the helper online (``protocols.additive.helped``)
        raise ProtocolError("a helper comparison was asked of a dealer that answers no comparison")
    shape_a, shape_b, shape_c = request.output_shapes()
    last = len(prgs) - 1
    xor_in, xor_out = request.kind in _XOR_INPUTS or request.kind == BIT, request.kind in _XOR_OUTPUTS
    a = b = c_others = None
    for i, prg in enumerate(prgs):
        if i == last:
            a_i, b_i = expand_parts(prg, stream, (shape_a, shape_b))
        else:
            a_i, b_i, c_i = expand_parts(prg, stream, (shape_a, shape_b, shape_c))
            c_others = c_i if c_others is None else c_others ^ c_i if xor_out else c_others + c_i
        a = a_i if a is None else a ^ a_i if xor_in else a + a_i
        b = b_i if b is None else b ^ b_i if xor_in else b + b_i
    assert a is not None and b is not None and c_others is not None  # n >= 2 parties
    value = _combine(request, a, b)
    return a, (value ^ c_others if xor_out else value - c_others)


class PlanMismatch(RuntimeError):
    """The program asked the dealer for something other than what it had planned ahead of time."""


def encode_plan(requests: Sequence[Request], times: int) -> np.ndarray:
    """A PLAN message: ``times`` repetitions of ``requests``, in order."""
    parts: list[int] = [PLAN, times, len(requests)]
    for request in requests:
        encoded = request.encode()
        parts += [len(encoded), *encoded.tolist()]
    return np.array(parts, dtype=np.int64)


def decode_plan(array: np.ndarray) -> tuple[list[Request], int]:
    """Parse and validate a PLAN message; ProtocolError on anything malformed or too large."""
    values = np.asarray(array, dtype=np.int64).reshape(-1)
    try:
        times, count = int(values[1]), int(values[2])
        requests, at = [], 3
        for _ in range(count):
            length = int(values[at])
            if length < 4 or at + 1 + length > len(values):
                raise ValueError("length")
            requests.append(Request.decode(values[at + 1 : at + 1 + length]))
            at += 1 + length
        if at != len(values):
            raise ValueError("trailing")
    except (IndexError, ValueError):
        raise ProtocolError("malformed dealer plan") from None
    if times < 0 or count < 0:
        raise ProtocolError("dealer plan with a negative count")
    total = times * sum(_numel(request.output_shapes()[2]) for request in requests)
    if total > MAX_PLAN_ELEMENTS:
        raise ProtocolError(f"dealer plan for {total} correction elements, over the cap of {MAX_PLAN_ELEMENTS}")
    return requests, times


def request_plan(party: Party, requests: Sequence[Request], times: int, *, wait: bool = True) -> None:
    """Ask the dealer to make ``times`` repetitions of ``requests`` now, ahead of their use (offline phase).

    Every party calls this at the same point of the program (it takes one dealer stream id on each).  The last
    party sends the plan; the dealer makes the corrections in order and sends each under its stream id, then an
    acknowledgement under the plan's id.  With ``wait``, the last party blocks until that acknowledgement (so
    every correction is in its mailbox and the online phase never waits on the dealer); without, the dealer
    works in the background while the program goes on.  Later requests must match the plan, in order
    (``PlanMismatch`` otherwise).  Costs no round among the parties.
    """
    if times < 0:
        raise ValueError(f"times must be >= 0, got {times}")
    plan_stream = party.next_dealer_request()
    planned = [request for _ in range(times) for request in requests]
    if party.rank == party.last:
        encoded = encode_plan(requests, times)
        decode_plan(encoded)  # refuse an oversized plan here, with the dealer's message
        party.send(party.dealer_id, plan_stream, torch.from_numpy(encoded))
        party.planned.extend(planned)
        if wait:
            party.recv(party.dealer_id, plan_stream, "dealer plan")
        else:
            party.pending_plan_acks.append(plan_stream)


class Correlated:
    """This party's shares of one request: ``a``, ``b`` at once; ``c`` on first use (the last party waits
    for the dealer's correction then, so the dealer's latency overlaps the protocol's own round)."""

    __slots__ = ("a", "b", "_c", "_party", "_stream", "_shape_c", "_kind")

    @property
    def stream(self) -> int:
        """The dealer stream id of this request."""
        return self._stream

    def __init__(self, party: Party, request: Request) -> None:
        if party.dealer_prg is None:
            raise RuntimeError("this session has no dealer: its protocol family makes correlated randomness "
                               "itself")
        shape_a, shape_b, shape_c = request.output_shapes()
        stream = party.next_dealer_request()
        self._party, self._stream, self._shape_c, self._kind = party, stream, shape_c, request.kind
        if party.rank == party.last and party.plan_ahead:
            # The whole call's requests, sent as one plan under this first request's stream (the replicated
            # family's helper, ``protocols.replicated.helper.RememberedPlans``); observers hear of it first.
            ahead, party.plan_ahead = party.plan_ahead, ()
            plan = encode_plan(ahead, 1)
            party.notify_opening("helper plan", plan.nbytes)
            party.send(party.dealer_id, stream, torch.from_numpy(plan))
            party.planned.extend(ahead)
        party.notify_dealer_request(request)
        if party.rank == party.last:
            if party.planned:
                expected = party.planned.popleft()
                if expected != request:
                    raise PlanMismatch(
                        f"dealer request {stream} is a {_KIND_NAMES[request.kind]} of shapes {request.shape_x}, "
                        f"{request.shape_y}, but the plan made ahead of time has a {_KIND_NAMES[expected.kind]} of "
                        f"shapes {expected.shape_x}, {expected.shape_y}: plan only steps that repeat exactly")
            else:
                party.send(party.dealer_id, stream, torch.from_numpy(request.encode()))
            self.a, self.b = expand_parts(party.dealer_prg, stream, (shape_a, shape_b), party)
            self._c: torch.Tensor | None = None
        elif request.kind == COMPARE:  # its c share is drawn by ``helped.helped_ltz`` (exactly uniform residues)
            self.a, self.b = expand_parts(party.dealer_prg, stream, (shape_a, shape_b), party)
            self._c = None
        else:
            self.a, self.b, self._c = expand_parts(party.dealer_prg, stream, (shape_a, shape_b, shape_c), party)

    @property
    def c(self) -> torch.Tensor:
        if self._c is None:
            op = f"dealer {_KIND_NAMES[self._kind]}"
            self._c = self._party.recv(self._party.dealer_id, self._stream, op).reshape(self._shape_c)
        return self._c


def beaver_triple(party: Party, shape_x: Sequence[int], shape_y: Sequence[int]) -> Correlated:
    """Shares of (a, b, a*b) for an elementwise product of operands of the given (broadcastable) shapes."""
    return Correlated(party, Request(MUL, 0, tuple(shape_x), tuple(shape_y)))


def matrix_triple(party: Party, shape_x: Sequence[int], shape_y: Sequence[int]) -> Correlated:
    """Shares of (A, B, A @ B) for a matmul of operands of the given shapes."""
    return Correlated(party, Request(MATMUL, 0, tuple(shape_x), tuple(shape_y)))


def masked_bits(party: Party, shape: Sequence[int]) -> Correlated:
    """A uniform r per element: additive shares in ``a``, XOR shares (one 64-bit word) in ``c``."""
    return Correlated(party, Request(MASK_BITS, 0, tuple(shape)))


def binary_triple(party: Party, shape_x: Sequence[int], shape_y: Sequence[int]) -> Correlated:
    """XOR shares of words (a, b, a & b) for a bitwise AND of operands of the given (broadcastable) shapes."""
    return Correlated(party, Request(AND, 0, tuple(shape_x), tuple(shape_y)))


def random_bit(party: Party, shape: Sequence[int]) -> Correlated:
    """A uniform bit per element: XOR share in bit 0 of ``a`` (other bits are noise), additive share in ``c``."""
    return Correlated(party, Request(BIT, 0, tuple(shape)))


def truncation_pair(party: Party, shape: Sequence[int], divisor: int) -> Correlated:
    """Shares of r uniform over Z_2^64 (as unsigned) in ``a``, and of s = floor(r / divisor) and
    u = MSB(r) (s + ceil((2^64 - r) / divisor)) in ``c[0]`` and ``c[1]``."""
    return Correlated(party, Request(TRUNC, int(divisor), tuple(shape)))


def serve(transport: Transport, prgs: Sequence[AesCtrPrg]) -> int:
    """Run the dealer: answer the last party's requests in order until it says goodbye.  Returns the count.

    The dealer only ever receives requests (kind and shapes) from the last party, never data.
    """
    last = len(prgs) - 1
    stream = served = 0
    while True:
        stream += 1
        try:
            raw = transport.recv(last, stream, op="dealer request")
        except PeerClosedError:
            return served
        if raw.size and int(raw.reshape(-1)[0]) == PLAN:
            requests, times = decode_plan(raw)
            _refuse_online(requests)
            plan_stream = stream
            for _ in range(times):
                for request in requests:
                    stream += 1
                    transport.send(last, stream, dealer_correction(prgs, stream, request).numpy())
                    served += 1
            transport.send(last, plan_stream, np.zeros(1, dtype=np.int64))
            continue
        request = Request.decode(raw)
        _refuse_online([request])
        transport.send(last, stream, dealer_correction(prgs, stream, request).numpy())
        served += 1


def _refuse_online(requests: Sequence[Request]) -> None:
    """ProtocolError, before anything is made, for a request only an online helper answers."""
    if any(request.kind == COMPARE for request in requests):
        raise ProtocolError("a helper comparison was asked of a dealer that answers no comparison")
