"""A full disk under the state dir (a 2 MiB tmpfs, root only): ``msg send``
fails with a clear one-line error (no traceback), the node stays up, and
nothing it had already acknowledged is lost; once space is freed it works
again and the database is sound.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.durability.integrity import integrity_check
from tests.harness import Node, ProcGroup, free_port, wait_for
from tmax_core.client import JsonNodeClient
from tmax_core.errors import MeshError

TMPFS_SIZE = "2M"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test; unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip(f"disk-full test skipped: needs root to mount a tmpfs (uid {os.geteuid()})")
    if shutil.which("mount") is None:
        pytest.skip("disk-full test skipped: `mount` is not installed")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        pytest.skip(f"disk-full test skipped: cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        for _ in range(20):  # the node may still be letting go of its files
            if subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30).returncode == 0:
                break
            subprocess.run(["sleep", "0.2"], check=False)
        else:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


@pytest.mark.timeout(120)
def test_disk_full_state_dir(procs: ProcGroup, small_disk: Path) -> None:
    state = small_disk / "node"
    friend = procs.node("friend", "--peer-listen", f"127.0.0.1:{free_port()}")  # same port after restart
    node: Node = procs.add(Node(state, "--peer-listen", "127.0.0.1:0"))  # type: ignore[assignment]
    node.log_path = small_disk.parent / "node.log"  # the log must not share the full disk
    node.start()
    with JsonNodeClient(node.ready["socket"]) as c, JsonNodeClient(friend.ready["socket"]) as f:
        c.invite_accept(f.invite_create(uses=1)["token"], alias="friend")
        wait_for(lambda: any(x["node_id"] == node.node_id for x in f.friends_list()), what="first contact")
        # Acknowledged state before the disk fills: received messages and queued sends.
        for i in range(5):
            f.msg_send(node.node_id, f"in {i}".encode())
        wait_for(lambda: len(c.inbox_list()) == 5, what="5 messages received")
        delivered = c.msg_send("friend", b"delivered before")["message_id"]
        assert c.msg_wait(delivered, 20)["status"] == "delivered"
    friend.stop()  # from now on sends stay queued in the outbox
    with JsonNodeClient(node.ready["socket"]) as c:
        queued = [c.msg_send("friend", f"queued {i}".encode())["message_id"] for i in range(5)]
        before_inbox = sorted(m["message_id"] for m in c.inbox_list())

    filler = fill(small_disk)
    assert shutil.disk_usage(small_disk).free < 64 * 1024
    # msg send through the CLI: non-zero exit, one clear line, no traceback.
    failures = []
    for i in range(30):  # SQLite may still have room in pages it holds: send until it runs out
        res = node.run("msg", "send", "--to", "friend", "x" * 20_000 + f" {i}", timeout=30)
        if res.returncode != 0:
            failures.append(res)
            break
    assert failures, "30 sends of 20 kB each on a full 2 MiB disk all succeeded"
    err = failures[0].stderr.decode(errors="replace").strip()
    print(f"msg send on a full disk: exit {failures[0].returncode}: {err}")
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "disk is full" in err and "Unexpected" not in err, err
    # The local API client gets a MeshError too, and the node is still up and answering.
    with JsonNodeClient(node.ready["socket"]) as c:
        with pytest.raises(MeshError) as info:
            c.msg_send("friend", b"y" * 50_000)
        assert info.value.code == "storage" and "disk is full" in str(info.value), info.value
        assert node.alive()
        assert c.node_info()["node_id"] == node.node_id
        assert sorted(m["message_id"] for m in c.inbox_list()) == before_inbox
        for mid in queued:
            assert c.msg_status(mid)["status"] in ("queued", "sent")

    # Space comes back: everything acknowledged is intact and the node works again.
    filler.unlink()
    with JsonNodeClient(node.ready["socket"]) as c:
        assert sorted(m["message_id"] for m in c.inbox_list()) == before_inbox
        assert c.msg_status(delivered)["status"] == "delivered"
        later = c.msg_send("friend", b"after space came back")["message_id"]
    friend.start()
    with JsonNodeClient(node.ready["socket"]) as c:
        for mid in [*queued, later]:
            assert c.msg_wait(mid, 30)["status"] == "delivered", c.msg_status(mid)
    with JsonNodeClient(friend.ready["socket"]) as f:
        bodies = sorted(m["body"] for m in f.inbox_list())
    assert bodies.count("delivered before") == 1 and bodies.count("after space came back") == 1
    assert all(bodies.count(f"queued {i}") == 1 for i in range(5)), bodies
    assert node.stop() == 0  # a clean SIGTERM shutdown
    log = node.log_path.read_text(errors="replace")
    print(f"node log: {log.count('Traceback')} tracebacks while the disk was full")
    assert integrity_check(state) == "ok"
