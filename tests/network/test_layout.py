"""The shape of the ``network`` package: small modules, the transport importable from where callers import it."""

from __future__ import annotations

from pathlib import Path

import network
import network.zmq_transport

#: STYLE.md: modules of a few hundred lines.  A module past this gets split along its seams.
MAX_MODULE_LINES = 600


def test_no_network_module_passes_600_lines() -> None:
    package = Path(network.__file__).parent
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in package.glob("*.py")}
    assert len(sizes) > 5
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_zmq_transport_is_importable_from_the_package_and_its_module() -> None:
    assert network.ZmqTransport is network.zmq_transport.ZmqTransport
    assert network.ZmqTransport.__module__ == "network.zmq_transport"
