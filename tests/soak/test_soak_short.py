"""The short soak in CI: 45 s of traffic between a relay host and four nodes
while the host and random nodes are SIGKILLed and restarted; fails on any
loss, duplicate, crash or traceback (see tests/soak/soak.py and
docs/reliability.md). Runs the one documented command in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.soak.soak import summary

DURATION_S = 45
SETTLE_S = 45
RUN_TIMEOUT_S = 170


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 20)
def test_soak_short(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [
        sys.executable,
        "-m",
        "tests.soak.soak",
        "--duration",
        str(DURATION_S),
        "--nodes",
        "4",
        "--kill-every",
        "5",
        "--settle",
        str(SETTLE_S),
        "--workdir",
        str(tmp_path / "run"),
        "--json",
        str(out),
    ]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the runner stop its daemons (they live in their own sessions).
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        pytest.fail(
            f"the soak did not finish in {RUN_TIMEOUT_S}s:\n{output.decode(errors='replace')[-5000:]}"
        )
    text = output.decode(errors="replace")
    assert out.exists(), f"no report (exit {proc.returncode}):\n{text[-5000:]}"
    report = json.loads(out.read_text())
    print(summary(report))
    assert report["messages_sent"] > 300, report["messages_sent"]
    assert report["kills"]["total"] >= 4 and report["kills"]["host"] >= 1, report["kills"]
    assert report["kills_survived"] == report["kills"]["total"]
    assert not report["crashes"], report["crashes"]
    assert not report["restart_failures"], report["restart_failures"]
    assert not report["tracebacks"], report["tracebacks"]
    assert report["duplicates"] == 0
    assert report["lost"] == 0 and report["pending"] == 0, report["lost_detail"]
    assert report["delivered"] == report["messages_sent"]
    assert not report["unexpected"] and not report["misrouted"]
    assert report["ok"] and proc.returncode == 0, text[-5000:]
