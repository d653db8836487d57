"""smpc.memory: with ``keep_freed_memory`` a process reuses the pages of a large freed block instead of faulting
in fresh ones; without it glibc maps and unmaps such a block every time (the control that shows the check can
fail).  Each case runs in its own interpreter: the setting is for a whole process."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tests.support.cli import repo_env

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="keep_freed_memory sets glibc's malloc; elsewhere it does nothing")

#: 40 MiB: above the 32 MiB at which glibc's own moving threshold stops, so by default it is always mmap'd.
PROGRAM = """
import resource, sys
import torch
from smpc.memory import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(5 << 20, dtype=torch.int64)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(took, sum(faults[-3:]))
"""
PAGES = (40 << 20) // 4096


def _faults_of_the_last_three(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], env=repo_env(), capture_output=True, text=True,
                          timeout=120, check=True)
    took, faults = done.stdout.split()
    return took, int(faults)


def test_freed_blocks_are_reused_only_when_asked() -> None:
    """Six 40 MiB blocks made and freed in turn: by default each of the last three is fresh pages (about
    3 x 10,240 faults); after keep_freed_memory() (which reports that it took) they reuse pages the heap already
    has (under 1/10 of one block; the heap settles within the first two)."""
    took, kept = _faults_of_the_last_three("keep")
    assert took == "True"
    _, default = _faults_of_the_last_three("default")
    assert default > 2 * PAGES, default
    assert kept < PAGES // 10, kept
