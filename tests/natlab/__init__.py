"""NAT-lab tests and their harness (:mod:`tests.natlab.lab`), re-exported here
so ``from tests.natlab import NatLab`` works."""

from tests.natlab.lab import (
    PUB,
    RA_WAN,
    RB_WAN,
    A,
    B,
    C,
    NatLab,
    NatLabUnavailable,
    probe_lab,
    running_lab,
    unavailable_reason,
)

__all__ = [
    "PUB",
    "RA_WAN",
    "RB_WAN",
    "A",
    "B",
    "C",
    "NatLab",
    "NatLabUnavailable",
    "probe_lab",
    "running_lab",
    "unavailable_reason",
]
