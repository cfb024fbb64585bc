"""End to end: the third-party example plugin in examples/task_update_plugin.

Installed, it adds the invite scope ``task_update``: an invite can grant it,
granted friends can send validated task updates, others are rejected. A node
without it (simulated with TMAX_MESH_DISABLE_PLUGINS) refuses invites that
grant it and messages that use it.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import pytest

from tests.harness import Node, ProcGroup, befriend
from tmax_core.client import JsonNodeClient
from tmax_core.errors import MeshError

LISTEN = "127.0.0.1:0"
PLUGIN = "task_update"  # the entry-point name: what `plugins` lists and DISABLE matches
DISABLED = {"TMAX_MESH_DISABLE_PLUGINS": PLUGIN}
INSTALL = "pip install -e examples/task_update_plugin"
UPDATE = json.dumps({"task": "build #42", "state": "done", "note": "all green"})


@pytest.fixture(autouse=True)
def _example_installed() -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group="tmax_mesh")}
    if PLUGIN not in names:
        pytest.fail(f"the example plugin is not installed; run `{INSTALL}` (see README)")


def send_task_update(sender: Node, to: str, body: str) -> dict[str, Any]:
    """``msg send --scope task_update --wait`` through the CLI; returns its JSON (any exit code)."""
    res = sender.run(
        "msg", "send", "--to", to, "--scope", PLUGIN, "--content-type", "application/json",
        "--wait", "--timeout", "20", "--json", body,
    )  # fmt: skip
    assert res.stdout.strip(), res.stderr.decode()
    result = json.loads(res.stdout)
    assert res.returncode == (0 if result["status"] == "delivered" else 1), result
    return result


def test_granted_friend_sends_task_updates_others_are_rejected(procs: ProcGroup) -> None:
    inviter = procs.node("a", "--peer-listen", LISTEN)
    granted = procs.node("b", "--peer-listen", LISTEN)
    plain = procs.node("c", "--peer-listen", LISTEN)

    plugins = {p["name"]: p for p in inviter.cli("plugins")}
    assert plugins[PLUGIN]["distribution"] == "tmax-mesh-example-task-update"
    assert plugins[PLUGIN]["hooks"] == ["tmax_register_invite_scopes"]

    friend = befriend(inviter, granted, "--scope", "message", "--scope", PLUGIN, alias="a")
    assert friend["scopes"] == ["message", PLUGIN]
    befriend(inviter, plain, alias="a")  # default invite: message only

    ok = send_task_update(granted, "a", UPDATE)
    assert ok["status"] == "delivered"
    with JsonNodeClient(inviter.ready["socket"]) as client:
        [got] = client.inbox_list()
    assert got["message_id"] == ok["message_id"] and got["scope"] == PLUGIN
    assert got["content_type"] == "application/json" and json.loads(got["body"]) == json.loads(UPDATE)

    bad = send_task_update(granted, "a", json.dumps({"task": "build #42", "state": "finished"}))
    assert bad["status"] == "failed"
    assert bad["error"].startswith("rejected: payload_invalid")
    assert "'finished'" in bad["error"]

    denied = send_task_update(plain, "a", UPDATE)
    assert denied["status"] == "failed"
    assert denied["error"].startswith("rejected: scope_not_granted")

    # Plain messages from the same friend still pass; nothing else reached the inbox.
    plain.cli("msg", "send", "--to", "a", "--wait", "--timeout", "20", "hello")
    with JsonNodeClient(inviter.ready["socket"]) as client:
        assert [(m["scope"], m["body"]) for m in client.inbox_list()] == [
            (PLUGIN, UPDATE),
            ("message", "hello"),
        ]


def test_node_without_the_plugin_refuses_its_scope(procs: ProcGroup) -> None:
    inviter = procs.node("a", "--peer-listen", LISTEN)
    without = procs.node("c", "--peer-listen", LISTEN, env=DISABLED)
    assert PLUGIN not in {p["name"] for p in without.cli("plugins")}

    token = inviter.invite("--scope", "message", "--scope", PLUGIN)
    res = without.run("invite", "accept", token)
    assert res.returncode == 1
    [line] = res.stderr.decode().strip().splitlines()
    assert line.startswith("tmax-mesh: error: invite grants unknown scope 'task_update'"), line
    with JsonNodeClient(without.ready["socket"]) as client:
        with pytest.raises(MeshError) as err:
            client.invite_accept(token)
        assert err.value.code == "invite_unknown_scope"
        assert client.friends_list() == []

    # Friends with a message-only invite: a task update sent to it is an unknown scope there.
    befriend(without, inviter, alias="c")
    rejected = send_task_update(inviter, "c", UPDATE)
    assert rejected["status"] == "failed"
    assert rejected["error"].startswith("rejected: unknown_scope")
    with JsonNodeClient(without.ready["socket"]) as client:
        assert client.inbox_list() == []
