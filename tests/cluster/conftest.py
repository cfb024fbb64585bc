from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.natsproc import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running ``nats-server -js`` on loopback (JetStream store in tmp_path), killed at teardown."""
    server = NatsServer(tmp_path)
    try:
        yield server.start()
    finally:
        server.kill()
