from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.natsproc import NatsServer, routed_servers


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running ``nats-server -js`` on loopback (JetStream store in tmp_path), killed at teardown."""
    server = NatsServer(tmp_path)
    try:
        yield server.start()
    finally:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three ``nats-server -js`` routed into one NATS cluster (JetStream replicated), killed at teardown."""
    servers = routed_servers(tmp_path)
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready(timeout=30)
        yield servers
    finally:
        for server in servers:
            server.kill()
