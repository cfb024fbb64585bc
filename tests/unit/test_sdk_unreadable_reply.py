"""What a hostile local node socket (TMAX_NODE_SOCKET pointed elsewhere, a
stale socket taken over) can make the SDK raise: the SDK promises MeshError
subclasses (docs/sdk.md), so a status reply it cannot read is one too
(UnreadableReply), not a JSON, recursion or type error from inside the SDK."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.fakenode import serve_replies, status_reply
from tmax_core.client import JsonNodeClient
from tmax_core.errors import UnreadableReply, error_for_code
from tmax_core.results import MAX_DETAILS_NESTING, NodeStatus
from tmax_core.sdk import AsyncNodeClient, NodeClient

pytestmark = pytest.mark.timeout(60)

SAYS = "unreadable node status: a transport's details are not a JSON object"


@pytest.fixture(params=["not json", "[" * 200_000, "[1, 2]"], ids=["not json", "deep", "not an object"])
def hostile_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "node.sock"
    server = serve_replies(sock, {"NodeStatus": status_reply(request.param)})
    yield sock
    server.stop(0)


def test_a_malformed_status_reply_is_a_mesh_error(hostile_socket: Path) -> None:
    with NodeClient(socket=hostile_socket) as client, pytest.raises(UnreadableReply, match=SAYS) as err:
        client.node_status()
    assert err.value.code == "unreadable_reply"


def test_a_malformed_status_reply_is_a_mesh_error_for_the_json_client(hostile_socket: Path) -> None:
    with JsonNodeClient(socket=hostile_socket) as client, pytest.raises(UnreadableReply, match=SAYS):
        client.node_status()


async def test_a_malformed_status_reply_is_a_mesh_error_async(hostile_socket: Path) -> None:
    async with AsyncNodeClient(socket=hostile_socket) as client:
        with pytest.raises(UnreadableReply, match=SAYS):
            await client.node_status()


def test_a_good_status_reply_still_reads(tmp_path: Path) -> None:
    server = serve_replies(tmp_path / "node.sock", {"NodeStatus": status_reply('{"hosts": []}')})
    try:
        with NodeClient(socket=tmp_path / "node.sock") as client:
            relay = client.node_status().transport("relay")
    finally:
        server.stop(0)
    assert relay is not None and relay.details == {"hosts": []}


def test_its_code_maps_to_its_class() -> None:
    """Like every SDK error, the code carried across the local API maps back to the class."""
    assert isinstance(error_for_code("unreadable_reply", "x"), UnreadableReply)


def _status(details_json: str) -> NodeStatus:
    return NodeStatus.from_pb(status_reply(details_json))


def test_details_nest_up_to_the_limit_and_brackets_in_strings_do_not_count() -> None:
    at_limit = '{"a": ' * (MAX_DETAILS_NESTING - 1) + "{}" + "}" * (MAX_DETAILS_NESTING - 1)
    assert _status(at_limit).transport("relay") is not None
    text = '{"hosts": ["[[[[{{{{", "\\"[" ], "x": {"y": []}}'
    assert _status(text).transport("relay").details == {"hosts": ["[[[[{{{{", '"['], "x": {"y": []}}
    with pytest.raises(UnreadableReply, match=SAYS):
        _status("[" + at_limit + "]")


@pytest.mark.timeout(30)
def test_no_reply_makes_the_nesting_count_backtrack() -> None:
    """An unterminated string of escaped quotes made a backtracking string pattern
    start again at each quote: hours for this reply, which now takes one pass
    (the timeout is the hang guard, some hundred times what it takes)."""
    for text in ('"' + '\\"' * 1_000_000, '"' + '\\"' * 1_000_000 + "\\", '"' + '\\\n\\"' * 700_000):
        with pytest.raises(UnreadableReply, match=SAYS):
            _status(text)


def _depth(k: int) -> int:
    return 0 if k == 0 else _depth(k - 1) + 1


def test_a_deep_reply_never_runs_a_garbage_collection_without_stack_left() -> None:
    """Fed to ``json.loads``, ``[[[[…`` recursed to Python's limit, and a garbage
    collection in it ran finalizers with a few frames to spare: CI saw one fail
    (an unraisable RecursionError). Each collection during the read must leave
    a finalizer room for 200 frames, wherever the collection falls."""
    starved = []

    def finalizer_room(phase: str, _info: dict) -> None:
        if phase == "start":
            try:
                _depth(200)
            except RecursionError:
                starved.append(1)

    gc.callbacks.append(finalizer_room)
    try:
        for allocated in range(0, 700, 10):  # moves where the next collection falls
            gc.collect()
            junk = [[] for _ in range(allocated)]
            with pytest.raises(UnreadableReply, match=SAYS):
                _status("[" * 200_000)
            del junk
    finally:
        gc.callbacks.remove(finalizer_room)
    assert not starved
