"""The MeshError code registry and third-party code (review 4): a plugin whose
module defines a MeshError subclass that restates its parent's code (``class
PeerNotFound(NotFound): code = "not_found"``) or refines its parent's code family
(``class InviteReused(InviteError): code = "invite_reused"``) loads (a clash had
raised TypeError at import, and the loader skipped the whole plugin); and a
registered subclass whose ``__init__`` does not take ``code=`` still comes back
from ``error_for_code`` (the SDK's reading of a node's error reply) as a MeshError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tmax_core.errors import MeshError, error_for_code
from tmax_core.plugin.manager import ENTRY_POINT_GROUP


def _load_third_party_plugin(tmp_path: Path, module_source: str) -> dict[str, object]:
    """Install (on PYTHONPATH) a distribution with one tmax-mesh entry point and
    run the real plugin loader in a fresh interpreter."""
    (tmp_path / "review4_plugin.py").write_text(textwrap.dedent(module_source))
    dist = tmp_path / "review4_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: review4-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nreview4 = review4_plugin\n")
    code = (
        "import json\n"
        "from tmax_core.plugin.manager import create_plugin_manager\n"
        "pm = create_plugin_manager()\n"
        "print(json.dumps({'loaded': sorted(pm.plugin_info), 'failed': [f.error for f in pm.failed]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "source",
    [
        """
        from tmax_core.errors import NotFound

        class PeerNotFound(NotFound):
            code = "not_found"  # restated, the same as its parent's
        """,
        """
        from tmax_core.errors import InviteError

        class InviteReused(InviteError):
            code = "invite_reused"  # one more of its parent's invite_ family
        """,
    ],
    ids=["restates-parent-code", "refines-parent-prefix"],
)
def test_a_plugin_subclassing_a_core_error_with_its_family_code_still_loads(
    tmp_path: Path, source: str
) -> None:
    result = _load_third_party_plugin(tmp_path, source)
    assert result["failed"] == [], result["failed"]
    assert "review4" in result["loaded"]  # type: ignore[operator]


def test_error_for_code_never_raises_for_a_registered_class_with_its_own_init() -> None:
    class PathLocked(MeshError):
        code = "review4_path_locked"

        def __init__(self, path: str) -> None:
            super().__init__(f"{path} is locked")

    err = error_for_code("review4_path_locked", "the node said so")
    assert isinstance(err, MeshError)
    assert err.code == "review4_path_locked"
