from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.harness import ProcGroup


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcGroup]:
    """Start real daemons with ``procs.node(name, *flags)``; all are stopped at teardown."""
    group = ProcGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest_asyncio.fixture
async def stuck_task() -> AsyncIterator[asyncio.Task]:
    """Stands for the task serving a relay host stream in unit tests (a failed
    write cancels it): see tests/unit/hubfakes.py."""
    task = asyncio.create_task(asyncio.Event().wait())
    yield task
    task.cancel()
