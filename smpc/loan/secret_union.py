"""The union of the parties' sets of strings, opened without saying who holds what (``secret_union``).

Each string is hashed into one of ``bucket_count(attempt)`` buckets of its column (a public hash, salted by the
attempt).  Every party shares its 0/1 bucket indicators; the OR of the parties' indicators is opened, which is a
function of the union alone.  Before any string is opened, collisions are found under MPC: for each occupied
bucket the tag (a second salted hash) of its first holder's string (by rank) is selected, every holder's tag is
compared with it, and one bit per column is opened: whether two different strings of the union share a bucket
of that column (again a function of the union alone; a party holding two strings in one bucket adds its own
flag).  Only the columns without a collision have their strings opened, the first holder's string of each
occupied bucket, which is then the bucket's only string; a column that collided is tried again with another
salt and more buckets, and nothing of its strings has been opened.  Two different strings with equal tags in
one bucket (probability 2^-TAG_BITS per such pair) would go unseen: the party whose string is missing from
the opened union then stops with a DataError (declare the schema) rather than train on a wrong one.

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
#: Bits of the tags that detect collisions: tag differences stay below 2^TAG_BITS, their squares summed over
#: three parties below 2^(2 TAG_BITS + 2), far inside the ring (the comparison reads the whole ring word).
TAG_BITS = 14
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
    Opened: the longest length, and per attempt each column's occupied buckets, one collided-or-not bit per
    column, and the strings of the columns without a collision: all functions of the union (and the public
    salts).  Rounds: n shares + 9 ceil(log2 n) + 1 for the length; per attempt n shares, n - 1 products and 1
    reveal (buckets), n - 1 products (first holders), n shares and 3 products (tags), n shares and two
    comparisons (9 rounds each) and 1 reveal (collisions), n shares, 1 product and 1 reveal (strings).  Bytes:
    dominated by sharing and multiplying the columns x buckets words of each attempt (2 KB per column and party
    at the first).  Error: none, but for tags equal by chance (see the module docstring).
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
    """One salted try on ``columns``: (the strings found per column, sorted; whether the column collided, in
    which case none of its strings was opened)."""
    n, width = session.world_size, 1 + math.ceil(longest / 2)
    indicator, held, doubled = _buckets(sets, columns, attempt)
    bits = [ring_share(session, indicator, owner) for owner in range(n)]
    occupied = ring_reveal(ring_or(session, bits)).nonzero(as_tuple=True)
    found: list[list[str]] = [[] for _ in columns]
    if not occupied[0].numel():
        return found, [False] * len(columns)
    here = [shared[occupied] for shared in bits]
    firsts = _first_holders(session, here)
    collided = _collisions(session, here, firsts, _tags(held, occupied, attempt), doubled, occupied[0], len(columns))
    clean = torch.tensor([not collided[column] for column in occupied[0].tolist()]).nonzero().reshape(-1)
    if clean.numel():
        kept = (occupied[0][clean], occupied[1][clean])
        total: SharedTensor | None = None
        for owner in range(n):
            chunks = ring_share(session, _chunks(held, kept, width), owner)
            term = firsts[owner][clean].unsqueeze(1).expand(-1, width).mul_unscaled(chunks)
            total = term if total is None else total + term
        assert total is not None
        for column, row in zip(kept[0].tolist(), ring_reveal(total).tolist()):
            found[column].append(_text(row))
    for column, own in enumerate(sets):
        if not collided[column] and any(text not in found[column] for text in own):
            raise DataError(f"two categories of column number {columns[column]} met by chance in the agreement; "
                            "declare the schema instead (smpc schema --categories, then --schema FILE)")
    return [sorted(strings) for strings in found], collided


def _first_holders(session: Session, here: Sequence[SharedTensor]) -> list[SharedTensor]:
    """For each party, 1 (a ring word) on the occupied buckets it holds and no lower rank holds."""
    one = session.public(torch.full(tuple(here[0].shape), 2.0 ** -session.encoding.frac_bits))
    firsts: list[SharedTensor] = []
    prefix: SharedTensor | None = None  # 1 where no lower rank holds the bucket
    for held in here:
        firsts.append(held if prefix is None else held.mul_unscaled(prefix))
        prefix = (one - held) if prefix is None else prefix.mul_unscaled(one - held)
    return firsts


def _collisions(session: Session, here: Sequence[SharedTensor], firsts: Sequence[SharedTensor],
                tags: torch.Tensor, doubled: torch.Tensor, column_of: torch.Tensor, n_columns: int) -> list[bool]:
    """Per column, opened: whether two different strings of the union share one of its buckets.  Steps: 1. each
    party shares its tag per occupied bucket (0 where it holds none); 2. the first holder's tag t = sum first_i
    tag_i; 3. per bucket s = sum here_i (tag_i - t)^2, zero exactly when every holder's tag is t; 4. [s > 0],
    summed per column by a public 0/1 matrix, plus every party's own flag (two of its strings in one bucket);
    5. [sum > 0.5] per column, opened."""
    n = session.world_size
    shared_tags = [ring_share(session, tags, owner) for owner in range(n)]
    chosen = sum((first.mul_unscaled(tag) for first, tag in zip(firsts[1:], shared_tags[1:])),
                 firsts[0].mul_unscaled(shared_tags[0]))
    spread = sum((held.mul_unscaled((tag - chosen).mul_unscaled(tag - chosen)) for held, tag in zip(here, shared_tags)),
                 session.public(torch.zeros(tuple(tags.shape))))
    by_column = torch.nn.functional.one_hot(column_of, n_columns).to(torch.int64)
    counts = (spread > 0) @ by_column
    for owner in range(n):
        counts = counts + session.share(doubled if session.rank == owner else None, owner=owner)
    return [bool(flag) for flag in (counts > 0.5).reveal().tolist()]


def _bucket(column: int, attempt: int, text: str) -> int:
    digest = hashlib.sha256(f"{attempt}\0{column}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % bucket_count(attempt)


def _buckets(sets: Sequence[Sequence[str]], columns: Sequence[int], attempt: int
             ) -> tuple[torch.Tensor, dict[tuple[int, int], str], torch.Tensor]:
    """This party's 0/1 indicators (len(sets) x bucket_count(attempt)), the string it holds in each of its
    buckets (the first, in sorted order, of any that share one), and per column 1.0 where two of its own strings
    share a bucket (a collision of the union, which its tag alone would not show)."""
    indicator = torch.zeros(len(sets), bucket_count(attempt), dtype=torch.float64)
    doubled = torch.zeros(len(sets), dtype=torch.float64)
    held: dict[tuple[int, int], str] = {}
    for index, (column, strings) in enumerate(zip(columns, sets)):
        for text in sorted(strings):
            bucket = _bucket(column, attempt, text)
            indicator[index, bucket] = 1.0
            if held.setdefault((index, bucket), text) != text:
                doubled[index] = 1.0
    return indicator, held, doubled


def _tags(held: dict[tuple[int, int], str], occupied: tuple[torch.Tensor, ...], attempt: int) -> torch.Tensor:
    """This party's tag (in 1..2^TAG_BITS - 1) of its string in each occupied bucket, 0 where it holds none."""
    tags = torch.zeros(occupied[0].numel(), dtype=torch.float64)
    for row, key in enumerate(zip(occupied[0].tolist(), occupied[1].tolist())):
        text = held.get(key)
        if text is not None:
            digest = hashlib.sha256(f"tag\0{attempt}\0{key[0]}\0{text}".encode()).digest()
            tags[row] = 1 + int.from_bytes(digest[:8], "big") % ((1 << TAG_BITS) - 1)
    return tags


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
