"""Shared pieces of the fuzz campaign (docs/reliability.md).

Each test runs a bounded number of hypothesis examples (CI time stays small);
``TMAX_FUZZ_SCALE=N`` multiplies every budget for a longer local campaign, and
``--hypothesis-show-statistics`` prints the case counts per target. Daemons
are module-scoped (started once per file): hypothesis runs many examples
against one real process, which is the point.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import ProcGroup


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcGroup]:
    """Daemons shared by every test of one module; stopped at its end."""
    group = ProcGroup(tmp_path_factory.mktemp("fuzz"))
    try:
        yield group
    finally:
        group.stop_all()
