"""The union of the parties' sets of strings, opened without saying who holds what (``secret_union``).

Each string is hashed into one of ``bucket_count(attempt)`` buckets of its column (a public hash, salted by the
attempt).
Every party shares its 0/1 bucket indicators; the OR of the parties' indicators is opened, which is a function
of the union alone.  For each occupied bucket the string of its first holder (by rank) is selected under MPC
and opened.  Two strings of the union in one bucket would lose one of them: every party then checks its own
strings against what was opened, the OR of those checks is opened per column (again a function of the union
alone), and a column that collided is tried again with another salt and more buckets.

Known leak, to be closed: in a bucket where two different strings collide, the string opened is that of the
bucket's lowest-ranked holder, before the collision is detected; the others so learn which of the two that party
holds.  With 2^8 buckets a column of ten categories collides at the first attempt with probability about 0.16.
The fix is to detect a collision under MPC before any string is opened (compare a second hash of each holder's
string with the selected one's, open only one bit per column) and to open only the columns without one.

Values travel as ring integers: an integer v is shared as the fixed-point value v * 2^-frac_bits, whose ring
word is v; products of such 0/1 words with each other or with small integers use ``mul_unscaled`` and stay
exact.  Strings are cut into 2-byte chunks (each below 2^16, inside the fixed-point range for any
frac_bits + int_bits > 16).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from smpc.loan.schema import DataError
from smpc.session import Session
from smpc.tensor import SharedTensor, stack

#: Buckets per column at the first attempt, and the factor by which a column that collided gets more at the
#: next: with m buckets, k strings collide with probability about 1 - exp(-k^2 / 2m).  Small first (most
#: columns have a few categories, and the bytes grow with the buckets), larger only where needed.
BUCKETS = 2**8
GROWTH = 4
#: Attempts before giving up on a column (2^18 buckets at the last: a few hundred categories at most; more
#: need a declared schema).
ATTEMPTS = 6


def bucket_count(attempt: int) -> int:
    """Buckets per column at ``attempt`` (from 0)."""
    return BUCKETS * GROWTH**attempt


def ring_share(session: Session, values: torch.Tensor, owner: int) -> SharedTensor:
    """Share small integers ``values`` (owner's; others pass anything) as ring words equal to them."""
    unit = 2.0 ** -session.encoding.frac_bits
    return session.share(values.double() * unit if session.rank == owner else None, owner=owner)


def ring_reveal(shared: SharedTensor) -> torch.Tensor:
    """Open ring words that hold small integers (int64)."""
    return torch.round(shared.reveal() * 2.0 ** shared.session.encoding.frac_bits).to(torch.int64)


def ring_or(session: Session, bits: Sequence[SharedTensor]) -> SharedTensor:
    """The OR of shared 0/1 ring words: 1 - prod(1 - b).  Rounds: len(bits) - 1 products."""
    one = session.public(torch.full(tuple(bits[0].shape), 2.0 ** -session.encoding.frac_bits))
    none = one - bits[0]
    for bit in bits[1:]:
        none = none.mul_unscaled(one - bit)
    return one - none


def joint_maximum(session: Session, values: Sequence[int]) -> list[int]:
    """The elementwise maximum over the parties of integer vectors (|v| < 2^16 here), opened to all; nothing
    else is opened.  Steps: 1. each party shares its vector as ring words; 2. the maximum over the parties'
    axis (``SharedTensor.max``: a tournament of secure comparisons, exact); 3. reveal.  Rounds: n shares +
    9 ceil(log2 n) + 1.  Error: none."""
    if not values:
        return []
    mine = torch.tensor(list(values), dtype=torch.float64)
    shared = stack([ring_share(session, mine, owner) for owner in range(session.world_size)])
    return ring_reveal(shared.max(dim=0)).tolist()


def secret_union(session: Session, sets: Sequence[Sequence[str]], names: Sequence[str]) -> list[list[str]]:
    """For each column, the sorted union of every party's set ``sets[column]`` (named ``names[column]`` in
    errors); every party passes its own sets, the same number of columns.

    Steps: 1. the longest string's UTF-8 length over all parties (``joint_maximum``); 2. an attempt
    (``_attempt``) on the columns still open; 3. columns whose attempt collided are tried again with the next
    salt and GROWTH times the buckets, at most ``ATTEMPTS`` times, then refused (DataError).
    Opened: the longest length, and per attempt each column's occupied buckets, the union's strings and one
    collided-or-not bit: all functions of the union (and the public salts).  Rounds: n shares + 9 ceil(log2 n)
    + 1 for the length; per attempt n shares, n - 1 products and 1 reveal (buckets), n shares, 2n - 1 products
    and 1 reveal (strings), n shares, n - 1 products and 1 reveal (the check).  Bytes: dominated by sharing and
    multiplying the columns x buckets words of each attempt (2 KB per column and party at the first).
    Error: none.
    """
    longest = joint_maximum(session, [max(len(s.encode("utf-8")) for column in sets for s in column)])[0]
    union: list[list[str]] = [[] for _ in sets]
    pending = list(range(len(sets)))
    for attempt in range(ATTEMPTS):
        found, collided = _attempt(session, [sets[c] for c in pending], pending, longest, attempt)
        for column, strings in zip(pending, found):
            union[column] = strings
        pending = [column for column, bad in zip(pending, collided) if bad]
        if not pending:
            return union
    raise DataError(f"column {names[pending[0]]!r} has too many categories to agree them without revealing each "
                    "bank's own; declare the schema instead (smpc schema --categories, then --schema FILE)")


def _attempt(session: Session, sets: Sequence[Sequence[str]], columns: Sequence[int], longest: int,
             attempt: int) -> tuple[list[list[str]], list[bool]]:
    """One salted try on ``columns``: (the strings found per column, sorted; whether the column collided)."""
    n, width = session.world_size, 1 + math.ceil(longest / 2)
    indicator, held = _buckets(sets, columns, attempt)
    bits = [ring_share(session, indicator, owner) for owner in range(n)]
    occupied = ring_reveal(ring_or(session, bits)).nonzero(as_tuple=True)
    total: SharedTensor | None = None
    prefix: SharedTensor | None = None  # 1 where no lower rank holds the bucket
    for owner, shared in enumerate(bits):
        here = shared[occupied]
        first = here if prefix is None else here.mul_unscaled(prefix)
        one = session.public(torch.full(tuple(here.shape), 2.0 ** -session.encoding.frac_bits))
        prefix = (one - here) if prefix is None else prefix.mul_unscaled(one - here)
        chunks = ring_share(session, _chunks(held, occupied, width), owner)
        term = first.unsqueeze(1).expand(-1, width).mul_unscaled(chunks)
        total = term if total is None else total + term
    found: list[list[str]] = [[] for _ in columns]
    if total is not None and occupied[0].numel():
        for column, row in zip(occupied[0].tolist(), ring_reveal(total).tolist()):
            found[column].append(_text(row))
    lost = torch.tensor([float(any(s not in found[c] for s in own)) for c, own in enumerate(sets)])
    collided = ring_reveal(ring_or(session, [ring_share(session, lost, owner) for owner in range(n)]))
    return [sorted(strings) for strings in found], [bool(flag) for flag in collided.tolist()]


def _bucket(column: int, attempt: int, text: str) -> int:
    digest = hashlib.sha256(f"{attempt}\0{column}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % bucket_count(attempt)


def _buckets(sets: Sequence[Sequence[str]], columns: Sequence[int], attempt: int
             ) -> tuple[torch.Tensor, dict[tuple[int, int], str]]:
    """This party's 0/1 indicators (len(sets) x bucket_count(attempt)) and the string it holds in each of its
    buckets (the first, in sorted order, of any that share one: the others are lost, which the check catches)."""
    indicator = torch.zeros(len(sets), bucket_count(attempt), dtype=torch.float64)
    held: dict[tuple[int, int], str] = {}
    for index, (column, strings) in enumerate(zip(columns, sets)):
        for text in sorted(strings):
            bucket = _bucket(column, attempt, text)
            indicator[index, bucket] = 1.0
            held.setdefault((index, bucket), text)
    return indicator, held


def _chunks(held: dict[tuple[int, int], str], occupied: tuple[torch.Tensor, ...], width: int) -> torch.Tensor:
    """For each occupied bucket, this party's string there (zeros if none): its byte length, then 2-byte chunks."""
    rows = torch.zeros(occupied[0].numel(), width, dtype=torch.float64)
    for row, key in enumerate(zip(occupied[0].tolist(), occupied[1].tolist())):
        text = held.get(key)
        if text is not None:
            data = text.encode("utf-8")
            padded = data + b"\0" * (len(data) % 2)
            rows[row, 0] = len(data)
            rows[row, 1 : 1 + len(padded) // 2] = torch.tensor(
                [int.from_bytes(padded[i : i + 2], "big") for i in range(0, len(padded), 2)], dtype=torch.float64)
    return rows


def _text(row: Sequence[int]) -> str:
    """The string a row of chunks holds (its byte length first)."""
    data = b"".join(int(value).to_bytes(2, "big") for value in row[1:])
    return data[: int(row[0])].decode("utf-8")
