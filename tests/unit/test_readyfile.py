"""Ready files are often in a shared directory (/tmp): a symlink planted
there must not make the daemon write through it (issue 13, item 9), and other
users may not read them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tmax_core.errors import MeshError
from tmax_core.readyfile import write_ready_file


def test_planted_symlink_cannot_redirect_the_ready_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    ready = tmp_path / "ready.json"
    # Where the ready file used to be written first (a predictable name).
    (tmp_path / f".{ready.name}.{os.getpid()}.tmp").symlink_to(victim)
    write_ready_file(ready, {"pid": 1})
    assert victim.read_text() == "precious\n"
    assert json.loads(ready.read_text()) == {"pid": 1}
    assert not ready.is_symlink()


def test_ready_file_path_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    ready = tmp_path / "ready.json"
    ready.symlink_to(victim)
    with pytest.raises(MeshError, match="symlink"):
        write_ready_file(ready, {"pid": 1})
    assert victim.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_ready_file_is_private(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    write_ready_file(ready, {"pid": 1})
    assert ready.stat().st_mode & 0o777 == 0o600
