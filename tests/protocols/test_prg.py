"""protocols.prg: determinism, separation of streams and keys, the documented CTR layout, and that no
non-cryptographic generator is used anywhere in the library."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from protocols.prg import KEY_BYTES, AesCtrPrg, new_key

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARY_PACKAGES = ("smpc", "fixedpoint", "protocols", "network")
STREAM_IDS = st.integers(0, (1 << 64) - 1)
KEYS = st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)


@given(KEYS, STREAM_IDS, st.integers(0, 300))
def test_same_key_and_stream_give_the_same_output(key: bytes, stream: int, count: int) -> None:
    """Two generators with one key agree on every stream; the output is int64 of the requested length."""
    first, second = AesCtrPrg(key).ring(stream, count), AesCtrPrg(bytearray(key)).ring(stream, count)
    assert first.dtype == torch.int64 and first.shape == (count,)
    assert torch.equal(first, second)


@given(KEYS, STREAM_IDS, st.integers(1, 100), st.integers(0, 100))
def test_a_stream_is_a_prefix_of_its_longer_self(key: bytes, stream: int, short: int, extra: int) -> None:
    """ring(s, n) is the first n elements of ring(s, n + m): a stream is one keystream cut at any length."""
    prg = AesCtrPrg(key)
    assert torch.equal(prg.ring(stream, short + extra)[:short], prg.ring(stream, short))


@given(KEYS, STREAM_IDS, STREAM_IDS)
def test_different_streams_differ(key: bytes, stream: int, other: int) -> None:
    """Different stream ids of one key give different outputs (64 elements agreeing would be a 2^-4096 event)."""
    if stream == other:
        other = (stream + 1) % (1 << 64)
    prg = AesCtrPrg(key)
    assert not torch.equal(prg.ring(stream, 64), prg.ring(other, 64))


@given(KEYS, KEYS, STREAM_IDS)
def test_different_keys_differ(key: bytes, other: bytes, stream: int) -> None:
    """Different keys give different outputs on the same stream."""
    if key == other:
        other = bytes([key[0] ^ 1]) + key[1:]
    assert not torch.equal(AesCtrPrg(key).ring(stream, 64), AesCtrPrg(other).ring(stream, 64))


@given(KEYS, STREAM_IDS, st.integers(1, 40))
def test_counter_block_is_stream_id_then_block_index(key: bytes, stream: int, count: int) -> None:
    """Element pair j of stream s is AES_k(s || j) (two 64-bit big-endian halves), read as little-endian int64:
    an independent AES-ECB computation of the documented CTR layout."""
    blocks = (count + 1) // 2
    counters = b"".join(stream.to_bytes(8, "big") + j.to_bytes(8, "big") for j in range(blocks))
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    keystream = encryptor.update(counters) + encryptor.finalize()
    expected = np.frombuffer(keystream, dtype="<i8")[:count]
    assert AesCtrPrg(key).ring(stream, count).tolist() == expected.tolist()


@pytest.mark.parametrize("count", [8191, 8192, 8193, 3 * 8192 + 5])
def test_the_keystream_is_continuous_across_the_generators_chunks(count: int) -> None:
    """ring() writes its keystream 64 KiB (8,192 elements) at a time: around and across those boundaries it is
    still AES_k(s || j) for consecutive j, against the same independent AES-ECB computation."""
    key, stream = bytes(range(16)), (7 << 56) | 12345
    blocks = (count + 1) // 2
    counters = b"".join(stream.to_bytes(8, "big") + j.to_bytes(8, "big") for j in range(blocks))
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    expected = np.frombuffer(encryptor.update(counters) + encryptor.finalize(), dtype="<i8")[:count]
    assert np.array_equal(AesCtrPrg(key).ring(stream, count).numpy(), expected)


def test_refusals_and_fresh_keys() -> None:
    """Wrong key sizes and out-of-range stream ids are refused; new_key gives distinct 16-byte keys."""
    for bad in (b"", bytes(15), bytes(17), "0" * 16):
        with pytest.raises(ValueError):
            AesCtrPrg(bad)  # type: ignore[arg-type]
    prg = AesCtrPrg(bytes(16))
    for stream in (-1, 1 << 64):
        with pytest.raises(ValueError):
            prg.ring(stream, 1)
    assert prg.ring(0, 0).shape == (0,)
    keys = {new_key() for _ in range(32)}
    assert len(keys) == 32 and all(len(k) == KEY_BYTES for k in keys)


# -- no insecure randomness in the library ---------------------------------------------------------------
#: Attributes that draw from numpy's or torch's (non-cryptographic) generators, or seed them.
_TORCH_RNG = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "bernoulli",
              "multinomial", "normal", "poisson", "manual_seed", "seed", "Generator"}
_TENSOR_RNG_METHODS = {"random_", "uniform_", "normal_", "bernoulli_", "exponential_", "geometric_", "cauchy_",
                       "log_normal_"}


def _dotted(node: ast.AST) -> str:
    """'np.random.default_rng' for the expression np.random.default_rng, '' for anything not a dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def insecure_randomness(source: str) -> list[str]:
    """Uses of the random module, numpy.random or torch's RNG in Python source (code only: docstrings and
    comments that merely mention them do not count)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "random" or a.name.startswith("numpy.random")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module in ("random", "numpy.random") or module.startswith("numpy.random."):
                found.append(f"from {module}")
            elif module in ("numpy", "torch"):
                found += [f"from {module} import {a.name}" for a in node.names if a.name in {"random"} | _TORCH_RNG]
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            head, _, rest = name.partition(".")
            if head == "random" or name.startswith(("np.random", "numpy.random")):
                found.append(name)
            elif head == "torch" and rest.split(".")[0] in _TORCH_RNG:
                found.append(name)
            elif node.attr in _TENSOR_RNG_METHODS:
                found.append(f"...{node.attr}")
    return found


def test_detector_finds_insecure_randomness() -> None:
    """The scanner flags the patterns it looks for and ignores mere mentions (so the next test can fail)."""
    flagged = "import random\nimport numpy as np\nimport torch\nx = np.random.default_rng()\ny = torch.rand(3)\n" \
              "z = random.getrandbits(8)\nt.uniform_()\nfrom numpy.random import default_rng\n"
    hits = set(insecure_randomness(flagged))
    assert {"random", "np.random.default_rng", "torch.rand", "random.getrandbits", "...uniform_",
            "from numpy.random"} <= hits
    assert insecure_randomness('"""uniformly random. np.random is banned"""\nimport os\nk = os.urandom(16)\n') == []


#: The only non-cryptographic generators allowed in library code, each for a value that is no share, mask,
#: key or triple.  Anything else, or a new use in these files, fails the test below.
ALLOWED_RANDOMNESS = {
    # The public, seeded split of row indices among banks and the test set; the public, seeded mini-batch
    # order; the model owner's plain initial weights (torch's default init).
    "smpc/loan/data.py": {"np.random.default_rng", "np.random", "torch.Generator", "torch.rand"},
    # Public synthetic inputs of the benchmark suite and its training workload, and the plain model's weights.
    "smpc/bench/suite.py": {"torch.Generator", "torch.rand"},
    "smpc/bench/training.py": {"np.random.default_rng", "np.random", "torch.Generator", "torch.rand"},
    # The public operands and synthetic training rows of the side-by-side comparison with CrypTen.
    "smpc/bench/versus.py": {"np.random.default_rng", "np.random", "torch.Generator", "torch.rand"},
    # A bank's public, seeded order of its own rows for local fedavg steps (plain training, no share).
    "smpc/federated.py": {"np.random.default_rng", "np.random"},
    # The public, seeded train/test split of the digits data and its split among data owners.
    "smpc/digits.py": {"np.random.default_rng", "np.random"},
}


@pytest.mark.parametrize("package", LIBRARY_PACKAGES)
def test_library_uses_no_insecure_randomness(package: str) -> None:
    """No module of smpc, fixedpoint, protocols or network uses random, numpy.random or torch's RNG, except
    the listed public or private-input uses."""
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    offenders = {}
    for path in files:
        name = path.relative_to(REPO_ROOT).as_posix()
        hits = set(insecure_randomness(path.read_text(encoding="utf-8"))) - ALLOWED_RANDOMNESS.get(name, set())
        if hits:
            offenders[name] = sorted(hits)
    assert offenders == {}
