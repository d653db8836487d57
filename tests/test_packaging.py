"""What `pip install .` installs: the four packages our users asked for, with every subpackage, and no
top-level `benchmarks` (a generic name the CLI does not need: `smpc bench` lives in smpc.bench)."""

from __future__ import annotations

import configparser
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["options"]["packages"].strip() == "find:"
    patterns = [p.strip() for p in config["options.packages.find"]["include"].split(",")]
    found = set()
    for init in ROOT.rglob("__init__.py"):
        name = ".".join(init.parent.relative_to(ROOT).parts)
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            found.add(name)
    return found


def test_every_package_installs_and_benchmarks_does_not() -> None:
    installed = _installed_packages()
    assert {name.split(".")[0] for name in installed} == {"smpc", "fixedpoint", "protocols", "network"}
    for package in ("smpc.loan", "smpc.privacy", "smpc.nn", "smpc.bench", "protocols.approx"):
        assert package in installed, package
    source_packages = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("[a-z]*/**/__init__.py")
                       if p.parts[len(ROOT.parts)] in ("smpc", "fixedpoint", "protocols", "network")}
    assert source_packages <= installed


def test_every_embedded_data_file_ships_with_its_attribution() -> None:
    """Every file in smpc/data (the digits included) matches setup.cfg's package_data, and every CSV has its
    attribution section in smpc/data/README.md."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["smpc"].split(",")]
    files = [path.relative_to(ROOT / "smpc").as_posix() for path in (ROOT / "smpc" / "data").iterdir()]
    assert "data/digits.csv" in files
    for name in files:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns), name
    readme = (ROOT / "smpc" / "data" / "README.md").read_text()
    for name in files:
        if name.endswith(".csv"):
            assert f"## {name.split('/')[-1]}" in readme and "CC BY 4.0" in readme, name
