"""The ``tmax-mesh`` command line as a user sees it: JSON on every command,
clear one-line errors, ``config`` editing and precedence, ``plugins``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.harness import Node, ProcGroup, wait_for
from tmax_core.client import JsonNodeClient

FRIEND_KEYS = {
    "node_id",
    "alias",
    "blocked",
    "scopes",
    "relay_hosts",
    "endpoints",
    "added_at_ms",
    "last_seen_ms",
}
INBOX_KEYS = {
    "message_id",
    "from_node_id",
    "from_alias",
    "sent_at_ms",
    "received_at_ms",
    "scope",
    "content_type",
    "body",
    "acked",
}


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """Assert a failed command printed exactly one clear line on stderr and no traceback."""
    assert res.returncode != 0, res
    err = res.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("tmax-mesh: error: "), lines[0]
    return lines[0]


def json_out(node: Node, *args: str) -> object:
    """Run a command with ``--json``; it must succeed and print exactly one JSON document."""
    res = node.run(*args)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert "--json" in args
    out = res.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1, f"expected one JSON line, got {out!r}"
    return json.loads(out)


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent CLI calls concurrently (each is a separate process)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_cli_without_running_node_says_how_to_start(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    results = parallel(
        lambda: node.run("node", "info"),
        lambda: node.run("inbox", "list", "--json"),
        lambda: node.run("msg", "send", "--to", "x", "hi"),
    )
    for res in results:
        line = one_line_error(res)
        assert "no tmax-node is running" in line and "tmax-node --state-dir" in line, line
        assert res.stdout == b""
    # A stale socket file left behind (e.g. after a crash) says the same.
    (node.state_dir / "node.sock").touch()
    line = one_line_error(node.run("node", "status", "--json"))
    assert "no tmax-node is answering" in line and "tmax-node --state-dir" in line, line


def test_every_command_gives_valid_json(procs: ProcGroup) -> None:
    """Every node command with ``--json`` prints one valid JSON document with the
    contract's fields (``config`` and ``plugins`` are covered below)."""
    a = procs.node("a", "--peer-listen", "127.0.0.1:0")
    b = procs.node("b", "--peer-listen", "127.0.0.1:0")

    info, status, created, invite = parallel(
        lambda: json_out(a, "--json", "node", "info"),  # --json before the command works too
        lambda: json_out(a, "node", "status", "--json"),
        lambda: json_out(
            a, "invite", "create", "--ttl", "1h", "--uses", "2", "--relay", "grpc://127.0.0.1:1", "--json"
        ),
        lambda: json_out(a, "invite", "create", "--alias", "alice", "--json"),
    )
    assert set(info) >= {"node_id", "public_key", "state_dir", "socket"}
    assert info["node_id"] == a.node_id
    assert set(status) >= {"node_id", "friends", "transports"}
    assert all(set(t) >= {"name", "state"} for t in status["transports"])
    assert set(created) >= {"token", "token_id", "expires_at_ms", "uses"}
    assert created["uses"] == 2

    revoked, friend = parallel(
        lambda: json_out(a, "invite", "revoke", created["token_id"], "--json"),
        lambda: json_out(b, "invite", "accept", invite["token"], "--json"),
    )
    assert isinstance(revoked, dict)
    assert set(friend) >= FRIEND_KEYS
    assert friend["node_id"] == a.node_id and friend["alias"] == "alice"
    with JsonNodeClient(a.state_dir / "node.sock") as client:
        wait_for(client.friends_list, what="first contact")

    listed, friends, blocked = parallel(
        lambda: json_out(a, "invite", "list", "--all", "--json"),
        lambda: json_out(b, "friends", "list", "--json"),
        lambda: json_out(b, "friends", "block", "alice", "--json"),
    )
    assert {i["token_id"]: i["revoked"] for i in listed} == {
        created["token_id"]: True,
        invite["token_id"]: False,
    }
    assert all(set(i) >= {"token_id", "expires_at_ms", "uses_left", "scopes"} for i in listed)
    assert [f["node_id"] for f in friends] == [a.node_id]
    assert all(set(f) >= FRIEND_KEYS for f in friends)
    assert blocked["blocked"] is True
    assert json_out(b, "friends", "unblock", "alice", "--json")["blocked"] is False

    sent = json_out(b, "msg", "send", "--to", "alice", "--wait", "--json", "hello")
    assert set(sent) >= {"message_id", "status", "path"}
    assert sent["status"] == "delivered"
    st, inbox, unread, err = parallel(
        lambda: json_out(b, "msg", "status", sent["message_id"], "--json"),
        lambda: json_out(a, "inbox", "list", "--unread", "--limit", "5", "--json"),
        lambda: json_out(a, "inbox", "unread", "--json"),
        lambda: a.run("msg", "status", "00" * 16, "--json"),
    )
    assert set(st) >= {"message_id", "status", "path", "attempts", "error"}
    assert st["message_id"] == sent["message_id"] and st["status"] == "delivered"
    assert len(inbox) == 1 and set(inbox[0]) >= INBOX_KEYS
    assert inbox[0]["body"] == "hello" and inbox[0]["from_node_id"] == b.node_id
    assert unread == {"unread": 1}
    # Errors stay one line on stderr with --json too, and print nothing on stdout.
    one_line_error(err)
    assert err.stdout == b""

    assert isinstance(json_out(a, "inbox", "ack", inbox[0]["message_id"], "--json"), dict)
    acked_all, removed = parallel(
        lambda: json_out(a, "inbox", "ack", "--all", "--json"),
        lambda: json_out(b, "friends", "remove", "alice", "--json"),
    )
    assert isinstance(acked_all, dict) and isinstance(removed, dict)


def test_config_set_get_unset_round_trip_and_validation(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    cfg = node.state_dir / "config.toml"
    path, ttl_set, relays_set = parallel(
        lambda: json_out(node, "config", "path", "--json"),
        lambda: json_out(node, "config", "set", "messages.ttl", "2h", "--json"),
        lambda: json_out(node, "config", "set", "node.relays", "grpc://h1:1,grpc://h2:2", "--json"),
    )
    assert path["path"] == str(cfg)
    assert ttl_set["value"] == "2h"
    assert relays_set["value"] == ["grpc://h1:1", "grpc://h2:2"]
    got, shown, human = parallel(
        lambda: json_out(node, "config", "get", "messages.ttl", "--json"),
        lambda: json_out(node, "config", "show", "--json"),
        lambda: node.run("config", "get", "node.relays"),
    )
    assert got == {"key": "messages.ttl", "value": "2h", "source": "file"}
    by_key = {row["key"]: row for row in shown}
    assert by_key["node.relays"]["value"] == ["grpc://h1:1", "grpc://h2:2"]
    assert by_key["node.relays"]["source"] == "file"
    assert by_key["messages.max_bytes"]["source"] == "default"
    assert human.returncode == 0 and "grpc://h1:1" in human.stdout.decode()

    # Invalid values: one clear line each, and the file is untouched.
    before = cfg.read_bytes()
    cases = [
        (("set", "messages.ttl", "banana"), "messages.ttl"),
        (("set", "messages.max_bytes", "-5"), "messages.max_bytes"),
        (("set", "messages.max_bytes", "lots"), "messages.max_bytes"),
        (("set", "node.peer_listen", "not-an-address"), "node.peer_listen"),
        (("set", "no.such_key", "1"), "no.such_key"),
        (("get", "no.such_key"), "no.such_key"),
        (("unset", "no.such_key"), "no.such_key"),
    ]
    results = parallel(*(lambda args=args: node.run("config", *args) for args, _ in cases))
    lines = set()
    for (args, fragment), res in zip(cases, results, strict=True):
        line = one_line_error(res)
        assert fragment in line, (args, line)
        lines.add(line)
    assert len(lines) == len(cases) - 2  # the three unknown-key errors say the same
    assert cfg.read_bytes() == before

    assert json_out(node, "config", "unset", "messages.ttl", "--json")["removed"] is True
    again, got = parallel(
        lambda: json_out(node, "config", "unset", "messages.ttl", "--json"),
        lambda: json_out(node, "config", "get", "messages.ttl", "--json"),
    )
    assert again["removed"] is False
    assert got == {"key": "messages.ttl", "value": "24h", "source": "default"}


def test_config_env_override_wins(procs: ProcGroup) -> None:
    plain = procs.node("a", start=False)
    plain.cli("config", "set", "messages.ttl", "2h")
    plain.cli("config", "set", "node.peer_listen", "127.0.0.1:0")
    env = {"TMAX_MESH_MESSAGES_TTL": "5m", "TMAX_MESH_NODE_PEER_LISTEN": ""}
    node = procs.node("a", start=False, env=env)  # same state dir, env set
    bad = procs.node("a", start=False, env={"TMAX_MESH_MESSAGES_TTL": "soon"})
    from_env, from_file, invalid = parallel(
        lambda: node.cli("config", "get", "messages.ttl"),
        lambda: plain.cli("config", "get", "messages.ttl"),
        lambda: bad.run("config", "get", "messages.ttl"),
    )
    assert from_env == {"key": "messages.ttl", "value": "5m", "source": "env"}
    assert from_file["source"] == "file"
    assert "TMAX_MESH_MESSAGES_TTL" in one_line_error(invalid)
    # The daemon honours it too: the file asks for a peer listener, the env turns it off.
    node.start()
    assert node.ready["peer_listen"] is None
    node.stop()
    plain.start()
    assert plain.ready["peer_listen"] is not None


def test_plugins_json_lists_bundled_plugins(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    plugins, human = parallel(lambda: json_out(node, "plugins", "--json"), lambda: node.run("plugins"))
    by_name = {p["name"]: p for p in plugins}
    assert {"core", "relay", "direct", "session_mailbox", "ratelimit"} <= set(by_name)
    for p in plugins:
        assert {"name", "version", "hooks"} <= set(p)
        assert isinstance(p["hooks"], list) and p["hooks"]
        assert all(h.startswith("tmax_") for h in p["hooks"])
    assert human.returncode == 0
    assert all(name in human.stdout.decode() for name in ("relay", "direct", "session_mailbox", "ratelimit"))
