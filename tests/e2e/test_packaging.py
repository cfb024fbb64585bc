"""The product as a user installs it (issue 14, item 7): the five wheels built
from this checkout, ``tmax-mesh[relay,direct]`` installed from them into a
fresh venv without an index, and a message through a relay host there.

The third-party wheels come from ``.venv/wheelhouse``, which
``scripts/setup.sh --dev`` fills; nothing here needs the network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import harness
from tests.harness import ProcGroup, befriend

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
DISTRIBUTIONS = [".", "plugins/relay", "plugins/direct", "plugins/session_mailbox", "plugins/ratelimit"]
FAST = {
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
    "TMAX_MESH_DIRECT_PUNCH": "false",  # the relay path is checked (on loopback a punch would succeed)
}


def run(*argv: str | Path, cwd: Path) -> str:
    res = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def build_wheels(dest: Path, scratch: Path) -> list[Path]:
    """The five wheels, built from a copy of the checkout: setuptools keeps a
    ``build/`` folder in the source tree, whose leftovers would end up in them."""
    src = scratch / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", "tests", "bench"
        ),
    )
    # No build isolation: the dev venv's setuptools builds them, offline.
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    run(*pip, "--wheel-dir", dest, *DISTRIBUTIONS, cwd=src)
    return sorted(dest.glob("*.whl"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheels_install_offline_and_exchange_a_message(
    procs: ProcGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (WHEELHOUSE / ".stamp").exists():
        pytest.fail(f"{WHEELHOUSE} is missing: run scripts/setup.sh --dev")
    wheels = build_wheels(tmp_path / "dist", tmp_path)
    assert [w.name.split("-")[:2] for w in wheels] == [
        ["tmax_mesh", "0.2.0"],
        ["tmax_mesh_direct", "0.2.0"],
        ["tmax_mesh_ratelimit", "0.2.0"],
        ["tmax_mesh_relay", "0.2.0"],
        ["tmax_mesh_session_mailbox", "0.2.0"],
    ]

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        *(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index"),
        *("--find-links", tmp_path / "dist", "--find-links", WHEELHOUSE, "tmax-mesh[relay,direct]"),
        cwd=tmp_path,
    )
    where = run(python, "-c", "import tmax_core, tmax_mesh_relay; print(tmax_core.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(venv), where

    monkeypatch.setattr(harness, "BIN", venv / "bin")
    plugins = json.loads(run(venv / "bin" / "tmax-mesh", "plugins", "--json", cwd=tmp_path))
    # The extras asked for, and nothing else (not session_mailbox or ratelimit).
    assert {p["name"]: p["version"] for p in plugins} == dict.fromkeys(["core", "relay", "direct"], "0.2.0")

    host = procs.host()
    a = procs.node("a", "--relay", host.url, env=FAST)
    b = procs.node("b", "--relay", host.url, env=FAST)
    assert {Path(p.argv[0]).parent for p in (host, a, b)} == {venv / "bin"}
    befriend(a, b)
    sent = b.cli("msg", "send", "--to", a.node_id, "--wait", "--timeout", "20", "from the wheels")
    assert (sent["status"], sent["path"]) == ("delivered", "relay"), sent
    assert a.inbox_bodies() == ["from the wheels"]
