"""bench/latency_breakdown.py finds its steps in the stamps bench/stamps makes:
a renamed function on the message path must fail here, not leave the tool
with no complete message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

CHECK = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import sitecustomize
from latency_breakdown import STEPS
steps = [s for _what, s in STEPS]
print(json.dumps({"labels": sorted(sitecustomize.LABELS), "steps": steps, "pid": os.getpid()}))
"""


def test_every_step_of_the_breakdown_is_stamped(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCH / "stamps"), "TMAX_STAMPS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(BENCH)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Error in sitecustomize" not in done.stderr
    found = json.loads(done.stdout)
    labels = set(found["labels"])
    for step in found["steps"]:
        side, _, stamp = step.partition(":")
        assert side in ("A", "B")
        assert stamp.rstrip("<>") in labels, f"{step} is in STEPS but nothing stamps it"
    assert (tmp_path / f"{found['pid']}.stamps").exists()  # written as the process exits
