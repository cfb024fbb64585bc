"""Fixtures for the NAT-lab tests: one lab per test session, reset between tests.

The lab needs root, ``ip`` and ``nft``; where it cannot be built the tests
skip and say exactly what is missing (``scripts/test.sh`` installs the tools).
Set ``TMAX_REQUIRE_NATLAB=1`` to turn that skip into a failure (for CI, where
the lab must run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.natlab.lab import NatLab, NatLabUnavailable, probe_lab


def _unavailable(reason: str) -> None:
    if os.environ.get("TMAX_REQUIRE_NATLAB", "") not in ("", "0"):
        pytest.fail(f"{reason} (TMAX_REQUIRE_NATLAB is set, so this is an error)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def natlab_session() -> Iterator[NatLab]:
    reason = probe_lab()
    if reason:
        _unavailable(reason)
    lab = NatLab()
    try:
        lab.up()
    except NatLabUnavailable as err:
        lab.down()
        _unavailable(f"NAT lab could not be built: {err}")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def natlab(natlab_session: NatLab) -> Iterator[NatLab]:
    """The session's lab with default settings (cone NAT, no loss) and no processes in it."""
    natlab_session.reset()
    try:
        yield natlab_session
    finally:
        natlab_session.reset()
