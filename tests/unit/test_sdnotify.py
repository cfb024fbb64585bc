from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tmax_core.sdnotify import notify


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_abstract_namespace_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tmax-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("READY=1", "STATUS=up") is True
        systemd.settimeout(5)
        assert systemd.recv(100) == b"READY=1\nSTATUS=up"


def test_unreachable_socket_is_a_warning_not_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify("READY=1") is False
    assert "cannot notify systemd" in caplog.text
