"""The ``tmax-node`` daemon as a process: identity persistence, file modes,
keystore failures, the single-instance lock and a clean SIGTERM shutdown."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import ProcGroup, script
from tmax_core.identity import load_or_create


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run_node(state_dir: Path, *extra: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``tmax-node`` expecting it to exit on its own (a start-up failure)."""
    return subprocess.run(
        [script("tmax-node"), "--state-dir", str(state_dir), *extra],
        capture_output=True,
        timeout=timeout,
        text=True,
    )


def assert_one_line_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    assert res.returncode != 0, res
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{res.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_restart_persists_node_identity(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    node.state_dir.rmdir()  # let the daemon create it (the harness pre-creates it 0755)
    node.start()
    first = node.node_id
    assert node.cli("node", "info")["node_id"] == first
    assert mode(node.state_dir) == 0o700
    assert mode(node.state_dir / "node.key") == 0o600
    assert mode(node.state_dir / "recovery.key") == 0o600
    assert stat.S_ISSOCK(os.stat(node.state_dir / "node.sock").st_mode)
    assert mode(node.state_dir / "node.sock") == 0o600
    key_bytes = (node.state_dir / "node.key").read_bytes()

    assert node.stop() == 0
    node.start()
    assert node.node_id == first
    assert node.cli("node", "info")["node_id"] == first
    assert (node.state_dir / "node.key").read_bytes() == key_bytes


def test_advertising_without_a_listener_refuses_to_start(tmp_path: Path) -> None:
    res = run_node(tmp_path / "n", "--peer-advertise", "0.0.0.0:7400")
    assert_one_line_error(res, "node.peer_advertise is set but node.peer_listen is not")
    res = run_node(tmp_path / "n", "--peer-listen", "127.0.0.1:0", "--peer-advertise", "10.0.0.1:0")
    assert_one_line_error(res, "node.peer_advertise", "port 0 cannot be dialled")
    assert not (tmp_path / "n" / "node.sock").exists()


def test_sigterm_exits_cleanly_and_removes_socket(procs: ProcGroup) -> None:
    node = procs.node("a")
    sock = Path(node.ready["socket"])
    assert sock.exists()
    assert node.stop() == 0
    assert not sock.exists()
    assert not node.ready_file.exists()
    assert "Traceback" not in node.log()


def test_second_daemon_on_same_state_dir_refuses(procs: ProcGroup) -> None:
    node = procs.node("a")
    other_ready = node.state_dir.parent / "second-ready.json"
    res = run_node(node.state_dir, "--ready-file", str(other_ready))
    line = assert_one_line_error(res, "already running", str(node.state_dir), str(node.pid))
    assert line.startswith("tmax-node: error:")
    assert not other_ready.exists()
    # The first daemon is untouched: its socket is still there and answers.
    assert node.alive()
    assert node.cli("node", "info")["node_id"] == node.node_id


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    """A state dir holding a valid identity (node.key + recovery.key), no daemon."""
    state_dir = tmp_path / "ks"
    state_dir.mkdir(mode=0o700)
    load_or_create(state_dir)
    return state_dir


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def test_wrong_recovery_key_refuses_and_leaves_files(keystore: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    before = snapshot(keystore / "node.key", keystore / "recovery.key", other)
    ready = tmp_path / "ready.json"
    res = run_node(keystore, "--recovery-key", str(other), "--ready-file", str(ready))
    assert_one_line_error(res, str(keystore / "node.key"), "wrong recovery key")
    assert snapshot(*before) == before
    assert not ready.exists()
    assert not (keystore / "state.db").exists()


def test_recovery_key_from_env_is_used(keystore: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    res = subprocess.run(
        [script("tmax-node"), "--state-dir", str(keystore)],
        capture_output=True,
        timeout=30,
        text=True,
        env={**os.environ, "TMAX_RECOVERY_KEY_FILE": str(other)},
    )
    assert_one_line_error(res, str(keystore / "node.key"), "wrong recovery key")


def test_missing_recovery_key_refuses_without_new_identity(keystore: Path, tmp_path: Path) -> None:
    (keystore / "recovery.key").unlink()
    before = snapshot(keystore / "node.key")
    res = run_node(keystore)
    assert_one_line_error(res, str(keystore / "recovery.key"), "missing")
    assert snapshot(*before) == before
    assert not (keystore / "recovery.key").exists()


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("corrupt", "corrupt"),
        ("truncated", "truncated"),
        ("tampered", "tampered"),
        ("empty", "truncated"),
    ],
)
def test_damaged_node_key_refuses_and_leaves_files(
    keystore: Path, tmp_path: Path, damage: str, fragment: str
) -> None:
    key = keystore / "node.key"
    data = key.read_bytes()
    if damage == "corrupt":
        data = b"\x00\xffnot a keystore\x00" + data[20:]
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "tampered":
        # Valid JSON, but one hex digit of the ciphertext changed: the AEAD tag fails.
        text = data.decode()
        i = text.index('"ciphertext": "') + len('"ciphertext": "')
        text = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1 :]
        data = text.encode()
    else:
        data = b""
    key.write_bytes(data)
    before = snapshot(key, keystore / "recovery.key")
    res = run_node(keystore)
    assert_one_line_error(res, str(key), fragment)
    assert snapshot(*before) == before


def test_recovery_key_of_wrong_length_is_named(keystore: Path, tmp_path: Path) -> None:
    bad = tmp_path / "short.key"
    bad.write_bytes(b"too short")
    res = run_node(keystore, "--recovery-key", str(bad))
    assert_one_line_error(res, str(bad), "32 bytes")
