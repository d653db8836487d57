"""The README's embedding example runs as written and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.cli import REPO_ROOT, repo_env


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)


def _run_block(index: int, folder: Path) -> str:
    """The README's ``index``-th python block run as a script in ``folder``; its standard output."""
    script = folder / f"block{index}.py"
    script.write_text(_python_blocks()[index])
    done = subprocess.run([sys.executable, str(script)], cwd=folder, env=repo_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.processes
def test_embedding_example_runs(tmp_path: Path) -> None:
    """Both run_local calls of the example (processes over CurveZMQ, then threads) give party 0 the result."""
    output = _run_block(0, tmp_path)
    results = [line for line in output.splitlines() if line.startswith("[tensor(")]
    assert len(results) == 2, output
    for line in results:
        # x @ w + 0.25 = [-1.25, -2.25]; row sums of x*x = [5, 25]; parties 1 and 2 get None.
        assert re.match(r"\[tensor\(\[ ?-1\.2500, -2\.2500,  ?5\.0000, 25\.0000\]", line), line
        assert line.endswith("None, None]"), line


def test_autograd_example_matches_torch(tmp_path: Path) -> None:
    """The README's autograd example (threads) ends where the same three steps in plain torch end."""
    shared = [float(v) for v in re.findall(r"-?\d+\.\d+", _run_block(1, tmp_path))]
    x, y = torch.tensor([[0.5, -1.0], [2.0, 0.25]]), torch.tensor([[1.0], [0.0]])
    w = torch.tensor([[0.3], [-0.2]], requires_grad=True)
    for _ in range(3):
        p = (x @ w).sigmoid()
        loss = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
        loss.backward()
        with torch.no_grad():
            w = (w - 0.5 * w.grad).requires_grad_()
    assert len(shared) == 2 and max(abs(a - b) for a, b in zip(shared, w.detach().reshape(-1).tolist())) < 1e-3


def test_torch_adapter_example_matches_torch(tmp_path: Path) -> None:
    """The README's smpc.nn example (threads) reaches the accuracy of the same 20 steps in plain torch, give or
    take two of its 64 rows (fixed-point error near a class boundary), and learned something."""
    printed = re.findall(r"accuracy (\d\.\d+)", _run_block(2, tmp_path))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.randn(64, 4)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    before = float((net(x).argmax(1) == labels).float().mean())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    for step in range(20):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x[batch]), labels[batch]).backward()
        optimizer.step()
    after = float((net(x).argmax(1) == labels).float().mean())
    assert len(printed) == 1 and abs(float(printed[0]) - after) <= 2 / 64
    assert after > before + 0.2
