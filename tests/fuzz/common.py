"""Helpers shared by the fuzz and resource-bound tests."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.harness import Node, wait_for
from tmax_core.client import JsonNodeClient

SCALE = max(1, int(os.environ.get("TMAX_FUZZ_SCALE", "1") or 1))


def budget(examples: int) -> settings:
    """Hypothesis settings for one target: ``examples`` cases (times TMAX_FUZZ_SCALE), no deadline
    (a real daemon answers), derandomized in CI so a failure reproduces."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=os.environ.get("CI", "") not in ("", "0", "false"),
        database=None,
    )


def vm_rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


TRACEBACK = "Traceback (most recent call last)"


def tracebacks(log: str) -> int:
    return log.count(TRACEBACK)


def first_traceback(log: str, before: int = 1500, after: int = 4000) -> str:
    """The log around its first traceback (what a failing assertion shows:
    the log's tail alone may no longer hold it)."""
    at = log.find(TRACEBACK)
    if at < 0:
        return log[-after:]
    return log[max(0, at - before) : at + after]


def befriend_api(inviter: Node, invitee: Node) -> None:
    """Like ``tests.harness.befriend`` but through the local API (no CLI process per step)."""
    with JsonNodeClient(inviter.ready["socket"]) as a, JsonNodeClient(invitee.ready["socket"]) as b:
        b.invite_accept(a.invite_create()["token"])
        wait_for(
            lambda: any(f["node_id"] == invitee.node_id for f in a.friends_list()),
            what="first contact to reach the inviter",
        )


def mutate(data: bytes, draw_ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: flip, overwrite, insert, delete, truncate."""
    out = bytearray(data)
    for kind, pos, value in draw_ops:
        if not out:
            out.append(value & 0xFF)
            continue
        i = pos % len(out)
        if kind == 0:
            out[i] ^= 1 << (value % 8)
        elif kind == 1:
            out[i] = value & 0xFF
        elif kind == 2:
            out.insert(i, value & 0xFF)
        elif kind == 3:
            del out[i]
        else:
            del out[i:]
    return bytes(out)


edits = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6
)


# tmax-host flags that lift the per-address caps, for floods that stand for many
# addresses but all come from 127.0.0.1.
UNCAPPED_SOURCE = (
    "--max-connections-per-ip",
    "100000",
    "--register-rate",
    "100000",
    "--register-burst",
    "100000",
)
