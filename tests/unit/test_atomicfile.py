"""tmax_core.atomicfile: one way to replace a file (config, keystore, ready file)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tmax_core import atomicfile
from tmax_core.atomicfile import write_atomic


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_replaces_the_content_with_the_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"one")
    write_atomic(target, b"two" * 100_000)
    assert target.read_bytes() == b"two" * 100_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(tmp_path / "g", b"", 0o644)
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o644 & ~_umask()
    assert leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_content_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomicfile.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_link_planted_at_the_temp_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    monkeypatch.setattr(atomicfile.secrets, "token_hex", lambda n: "guessed")
    (tmp_path / ".f.guessed.tmp").symlink_to(victim)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "f", b"evil")
    assert victim.read_bytes() == b"precious"


def test_a_link_at_the_path_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "f"
    link.symlink_to(victim)
    write_atomic(link, b"new")
    assert victim.read_bytes() == b"precious"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
