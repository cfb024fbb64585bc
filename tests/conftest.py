from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ProcGroup


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcGroup]:
    """Start real daemons with ``procs.node(name, *flags)``; all are stopped at teardown."""
    group = ProcGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
