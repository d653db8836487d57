"""The layout's dependency rules, checked on every import statement: smpc -> protocols -> fixedpoint, protocols
and smpc -> network; fixedpoint and network import nothing of the project, protocols nothing of smpc, and no
installed package imports benchmarks or tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"smpc", "protocols", "fixedpoint", "network", "benchmarks", "tests"}
ALLOWED = {
    "fixedpoint": set(),
    "network": set(),
    "protocols": {"fixedpoint", "network"},
    "smpc": {"protocols", "fixedpoint", "network"},
}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_one_way(package: str) -> None:
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = _imported(path) - ALLOWED[package] - {package}
        if wrong:
            offenders[str(path.relative_to(ROOT))] = sorted(wrong)
    assert offenders == {}
