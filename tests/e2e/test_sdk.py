"""The Python SDK against real tmax-node processes: examples/agent_loop.py
answers messages end to end, results are typed and frozen, errors are
MeshError subclasses, and the node is found as the CLI finds it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ProcGroup, befriend, wait_for
from tmax_core import AsyncNodeClient, FriendInfo, InboxItem, MeshError, MsgState, NodeClient, NodeInfo
from tmax_core.errors import NodeNotRunning, NotFound, UsageError

LISTEN = ("--peer-listen", "127.0.0.1:0")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent_loop.py"


def test_agent_loop_example_replies_and_acks(procs: ProcGroup) -> None:
    agent = procs.node("agent", *LISTEN)
    user = procs.node("user", *LISTEN)
    befriend(agent, user, "--alias", "agent")
    env = {**os.environ, "TMAX_STATE_DIR": str(agent.state_dir)}  # found as tmax-mesh finds it
    env.pop("TMAX_NODE_SOCKET", None)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--count", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with NodeClient(state_dir=user.state_dir) as client:
            ping = client.msg_send(to="agent", text="ping", wait=True)
            words = client.msg_send(to="agent", text="three little words", wait=True)
            assert (ping.status, words.status) == ("delivered", "delivered")
            replies = wait_for(
                lambda: len(items := client.inbox_list()) == 2 and items, what="the agent's two replies"
            )
        by_question = {m.reply_to: m for m in replies}
        assert by_question[ping.message_id].text == "pong"
        assert by_question[words.message_id].text == f"3 words from {user.node_id}"
        assert all(m.from_node_id == agent.node_id for m in replies)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith(f"agent on node {agent.node_id}\n")
    with NodeClient(state_dir=agent.state_dir) as client:
        assert client.inbox_unread() == 0  # the agent acked what it handled
        assert len(client.inbox_list()) == 2


def test_typed_results_errors_and_node_lookup(procs: ProcGroup, monkeypatch: pytest.MonkeyPatch) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    befriend(a, b, alias="alice")
    monkeypatch.delenv("TMAX_STATE_DIR", raising=False)
    monkeypatch.setenv("TMAX_NODE_SOCKET", a.ready["socket"])
    with NodeClient() as client:  # TMAX_NODE_SOCKET, as the CLI
        info = client.node_info()
        assert isinstance(info, NodeInfo) and info.node_id == a.node_id
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.node_id = "x"  # type: ignore[misc]
        (friend,) = client.friends_list()
        assert isinstance(friend, FriendInfo) and friend.node_id == b.node_id
        with pytest.raises(NotFound) as missing:
            client.msg_send(to="nobody", text="hi")
        assert missing.value.code == "not_found"
        with pytest.raises(UsageError):
            client.msg_send(to="nobody", text="hi", body=b"hi")
    monkeypatch.delenv("TMAX_NODE_SOCKET")  # it wins over a state dir, as for the CLI
    with NodeClient(state_dir=b.state_dir) as client:
        sent = client.msg_send("alice", b"\x00raw", content_type="application/octet-stream", wait=True)
        assert isinstance(sent, MsgState) and sent.status == "delivered" and sent.final
    with NodeClient(socket=a.ready["socket"]) as client:
        (got,) = client.inbox_list()
        assert isinstance(got, InboxItem) and got.body == b"\x00raw"
        assert got.as_dict()["body_encoding"] == "base64"
    with NodeClient(state_dir=a.state_dir.parent / "nothing-here") as client:
        with pytest.raises(NodeNotRunning) as down:
            client.node_info()
        assert isinstance(down.value, MeshError) and down.value.code == "node_not_running"


def test_async_inbox_watch_is_an_async_iterator(procs: ProcGroup) -> None:
    a = procs.node("a", *LISTEN)
    b = procs.node("b", *LISTEN)
    befriend(a, b, alias="alice")

    async def scenario() -> tuple[InboxItem, MsgState]:
        async with (
            AsyncNodeClient(state_dir=a.state_dir) as client_a,
            AsyncNodeClient(state_dir=b.state_dir) as client_b,
        ):
            sent = await client_b.msg_send(to="alice", text="async hello", wait=True)
            async for message in client_a.inbox_watch(include_existing_unread=True):
                await client_a.inbox_ack([message.message_id])
                return message, sent
        raise AssertionError("inbox_watch ended without a message")

    message, sent = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert message.message_id == sent.message_id and message.text == "async hello"
    with NodeClient(state_dir=a.state_dir) as client:
        assert client.inbox_unread() == 0
