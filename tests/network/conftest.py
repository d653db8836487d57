"""The ``cluster`` fixture: ZmqTransport nodes of one test, all aborted and closed at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.nodes import Cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        yield made
    finally:
        made.close()
