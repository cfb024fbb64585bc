"""Unit tests of the example plugin: the validator and its registration."""

from __future__ import annotations

import json

import pytest

from tmax_core.model import InviteScope
from tmax_core.plugin.manager import create_plugin_manager, list_plugins
from tmax_mesh_example_task_update import plugin

CT = "application/json"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        (CT, body(task="build #42", state="done")),
        (CT, body(task="t", state="in_progress", note="half way", extra=1)),
        ("application/json; charset=utf-8", body(task="t", state="blocked")),
        ("Application/JSON", body(task="t", state="todo", note=None)),
    ],
)
def test_valid_payloads(content_type: str, payload: bytes) -> None:
    plugin.validate(content_type, payload)


@pytest.mark.parametrize(
    ("content_type", "payload", "reason"),
    [
        ("text/plain", body(task="t", state="done"), "content type application/json"),
        ("application/json; charset=latin-1", body(task="t", state="done"), "UTF-8"),
        (CT, b"\xff\xfe", "not UTF-8"),
        (CT, b"{nope", "not JSON"),
        (CT, b"[1, 2]", "JSON object, got list"),
        (CT, body(state="done"), '"task"'),
        (CT, body(task="  ", state="done"), '"task"'),
        (CT, body(task=3, state="done"), '"task"'),
        (CT, body(task="x" * 201, state="done"), "longer than 200"),
        (CT, body(task="t"), '"state" must be one of'),
        (CT, body(task="t", state="finished"), "'finished'"),
        (CT, body(task="t", state="done", note=5), '"note" must be a string'),
    ],
)
def test_invalid_payloads_have_one_line_reasons(content_type: str, payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        plugin.validate(content_type, payload)
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


def test_registers_the_scope_with_its_validator() -> None:
    scopes: list[InviteScope] = []
    plugin.tmax_register_invite_scopes(register=scopes.append)
    assert [s.name for s in scopes] == ["task_update"]
    assert scopes[0].validate is plugin.validate


def test_loaded_from_its_entry_point() -> None:
    pm = create_plugin_manager(env={})
    rows = {r["name"]: r for r in list_plugins(pm)}
    assert rows["task_update"]["distribution"] == "tmax-mesh-example-task-update"
    assert rows["task_update"]["hooks"] == ["tmax_register_invite_scopes"]
    scopes: list[InviteScope] = []
    pm.hook.tmax_register_invite_scopes(register=scopes.append)
    assert {"message", "task_update"} <= {s.name for s in scopes}


def test_disabled_by_name() -> None:
    pm = create_plugin_manager(env={"TMAX_MESH_DISABLE_PLUGINS": "task_update"})
    assert "task_update" not in {r["name"] for r in list_plugins(pm)}
