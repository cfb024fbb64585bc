"""``tmax-mesh status`` (one line per friend: path now, last seen, queued and
failed), human times in text output, and the progress of ``msg send --wait``
on a terminal, against real nodes and a relay host."""

from __future__ import annotations

import os
import pty
import re
import subprocess

from tests.harness import Node, ProcGroup, befriend, script, wait_for

LISTEN = ("--peer-listen", "127.0.0.1:0")
# The relay path is part of what status shows: on loopback a hole punch would
# always succeed and move a and r off the relay (punching: tests/natlab).
NO_PUNCH = {"TMAX_MESH_DIRECT_PUNCH": "false"}
EPOCH_MS = re.compile(r"\b1\d{12}\b")  # a raw epoch-milliseconds time (2001-2286)


def by_id(node: Node) -> dict[str, dict]:
    return {f["node_id"]: f for f in node.cli("status")["friends"]}


def test_status_shows_each_friends_path_last_seen_and_counts(procs: ProcGroup) -> None:
    host = procs.host()
    a = procs.node("a", *LISTEN, "--relay", host.url, env=NO_PUNCH)
    b = procs.node("b", *LISTEN)
    r = procs.node("r", "--relay", host.url, env=NO_PUNCH)
    c = procs.node("c")  # neither listens nor uses a relay: b cannot reach it
    befriend(b, a, alias="bob")
    befriend(r, a, alias="rita")
    befriend(b, c)  # c dials b, so b learns c
    queued = b.cli("msg", "send", "--to", c.node_id, "for later")
    b.cli("friends", "block", a.node_id)
    refused = a.run("msg", "send", "--to", "bob", "--wait", "--timeout", "20", "refused", "--json")
    assert refused.returncode == 1 and b"rejected: blocked" in refused.stdout, refused

    friends = wait_for(lambda: (f := by_id(a))[r.node_id]["path"] == "relay" and f, what="a on the relay")
    bob, rita = friends[b.node_id], friends[r.node_id]
    assert set(bob) >= {"alias", "node_id", "path", "last_seen_ms", "queued", "failed"}
    assert (bob["alias"], bob["path"], bob["queued"], bob["failed"]) == ("bob", "direct", 0, 1)
    assert bob["last_seen_ms"] is None  # b has never sent a anything
    assert (rita["alias"], rita["path"], rita["failed"]) == ("rita", "relay", 0)
    carl = by_id(b)[c.node_id]
    assert (carl["path"], carl["queued"], carl["failed"]) == ("offline", 1, 0), carl
    assert carl["last_seen_ms"] > 0  # its first contact
    assert b.cli("msg", "status", queued["message_id"])["status"] == "queued"

    text = a.run("status").stdout.decode()
    lines = text.splitlines()
    assert lines[0].split() == ["FRIEND", "NODE", "ID", "PATH", "LAST", "SEEN", "QUEUED", "FAILED"]
    assert len(lines) == 3  # the header and one line per friend
    (bob_line,) = [ln for ln in lines if ln.startswith("bob ")]
    assert bob_line.split()[1] == f"{b.node_id[:6]}…{b.node_id[-4:]}"
    assert re.search(r"direct\s+never\s+0\s+1$", bob_line), bob_line
    assert not EPOCH_MS.search(text)
    (carl_line,) = [ln for ln in b.run("status").stdout.decode().splitlines() if c.node_id[-4:] in ln]
    assert re.search(r"offline\s+(\d+ (s|min) ago|just now)\s+1\s+0$", carl_line), carl_line

    # node status as text: the direct transport's friends as key=value lines, not dicts
    node_text = a.run("node", "status").stdout.decode()
    assert "{'" not in node_text and "['" not in node_text, node_text
    bob_fields = r"^    friends bob: path=\w+ via=\S+ endpoints=127\.0\.0\.1:\d+ healthy="
    assert re.search(bob_fields, node_text, re.M), node_text
    assert not EPOCH_MS.search(node_text), node_text


def test_text_output_shows_human_times_json_keeps_milliseconds(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    token = a.invite("--alias", "alice")
    accepted = b.run("invite", "accept", token)
    assert accepted.returncode == 0, accepted.stderr
    text = accepted.stdout.decode()
    assert re.search(r"^added_at\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((\d+ s ago|just now)\)$", text, re.M), (
        text
    )
    assert not EPOCH_MS.search(text)
    wait_for(lambda: a.cli("friends", "list"), what="first contact")
    for args in (("friends", "list"), ("invite", "list"), ("inbox", "list")):
        out = a.run(*args).stdout.decode()
        assert not EPOCH_MS.search(out), (args, out)
    (friend,) = b.cli("friends", "list")
    assert isinstance(friend["added_at_ms"], int) and EPOCH_MS.fullmatch(str(friend["added_at_ms"]))


def test_msg_send_wait_shows_progress_on_a_terminal_only(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    befriend(a, b, alias="alice")
    argv = [script("tmax-mesh"), "--state-dir", str(b.state_dir), "msg", "send", "--to", "alice", "--wait"]

    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*argv, "on a tty"], stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        progress = b""
        while chunk := _read(master):
            progress += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert progress.decode().strip() == "queued → delivered via direct", progress
    assert proc.stdout.decode().strip().endswith("delivered via direct")

    piped = subprocess.run([*argv, "not a tty"], capture_output=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == b""


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the other end is closed and everything was read
        return b""
