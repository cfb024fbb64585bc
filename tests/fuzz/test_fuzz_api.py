"""Fuzz the local API of a real ``tmax-node`` through the real client on the
real Unix socket: huge, negative, empty and odd values in every request field.

Contract: every call either succeeds or raises a ``MeshError`` with a stable
code and one clear line — never gRPC's "Unexpected <exception>" (an unhandled
error in the servicer), never a hang; afterwards the node still works (a
message to its friend is delivered), logged no traceback, and its memory
stayed bounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.fuzz.common import befriend_api, budget, first_traceback, tracebacks, vm_rss_kb
from tests.harness import Node, ProcGroup, wait_for
from tmax_core.client import JsonNodeClient
from tmax_core.errors import MeshError

BAD_CODES = {"unknown", "internal", "deadline_exceeded"}
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]))
TEXT = st.one_of(st.text(max_size=80), st.just(""), st.text(min_size=2000, max_size=3000))
SHORT = st.text(max_size=60)
LISTS = st.one_of(st.lists(SHORT, max_size=40), st.lists(TEXT, max_size=3))
HEXISH = st.one_of(
    TEXT, st.binary(max_size=40).map(bytes.hex), st.binary(max_size=20).map(lambda b: "0x" + b.hex())
)
OPEN_LIMITS = {
    "TMAX_MESH_RATELIMIT_RATE": "100000",
    "TMAX_MESH_RATELIMIT_BURST": "100000",
    "TMAX_MESH_RATELIMIT_SOURCE_RATE": "100000",
    "TMAX_MESH_RATELIMIT_SOURCE_BURST": "100000",
}
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@dataclass
class Api:
    node: Node
    friend: Node
    client: JsonNodeClient
    rss_start_kb: int
    calls: int = 0
    errors: int = 0

    def protected(self, ref: str) -> bool:
        """Refs naming the one real friend (so the campaign cannot remove or block it)."""
        r = ref.strip().lower()
        return r in {self.friend.node_id.lower(), self.friend.node_id.lower()[2:]}

    def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """One API call: a result, or a MeshError with a clear code and one line."""
        self.calls += 1
        try:
            return fn(*args, **kw)
        except MeshError as err:
            self.errors += 1
            text = str(err)
            assert err.code not in BAD_CODES, f"{fn.__name__}: {err.code}: {text}"
            assert not text.startswith("Unexpected"), f"{fn.__name__}: unhandled in the servicer: {text}"
            assert text and "Traceback" not in text and len(text.splitlines()) == 1, text
            return err


@pytest.fixture(scope="module")
def api(module_procs: ProcGroup) -> Iterator[Api]:
    node = module_procs.node("apinode", "--peer-listen", "127.0.0.1:0")
    # The friend takes whatever valid messages the campaign sends (rate limits opened up).
    friend = module_procs.node("friend", "--peer-listen", "127.0.0.1:0", env=OPEN_LIMITS)
    befriend_api(friend, node)
    client = JsonNodeClient(node.ready["socket"], timeout=20)
    try:
        yield Api(node, friend, client, vm_rss_kb(node.pid))
    finally:
        client.close()


@budget(120)
@given(
    to=st.one_of(HEXISH, st.just("FRIEND")),
    body=st.one_of(
        st.binary(max_size=300), st.just(b""), st.sampled_from([b"x" * (1024 * 1024), b"y" * (5 << 20)])
    ),
    scope=st.one_of(TEXT, st.just("message")),
    content_type=TEXT,
    ttl_ms=UINT64,
    reply_to=HEXISH,
)
@example(to="FRIEND", body=b"x", scope="message", content_type="", ttl_ms=2**64 - 1, reply_to="")
@example(to="FRIEND", body=b"x", scope="message", content_type="", ttl_ms=2**63 - 1, reply_to="")
@example(to="FRIEND", body=b"x" * (1024 * 1024), scope="message", content_type="", ttl_ms=0, reply_to="")
def test_msg_send(
    api: Api, to: str, body: bytes, scope: str, content_type: str, ttl_ms: int, reply_to: str
) -> None:
    if to == "FRIEND":
        to = api.friend.node_id
    res = api.call(
        api.client.msg_send,
        to,
        body,
        scope=scope,
        content_type=content_type,
        ttl_ms=ttl_ms,
        reply_to=reply_to,
    )
    if isinstance(res, dict):
        assert res["status"] in ("queued", "sent", "delivered") and len(res["message_id"]) == 32


@budget(60)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"to": st.one_of(HEXISH, st.just("FRIEND")), "body": st.binary(max_size=100)},
            optional={"ttl_ms": UINT64, "scope": SHORT, "content_type": SHORT},
        ),
        max_size=20,
    )
    | st.just([{"to": "FRIEND", "body": b"m"}] * 1001)
)
def test_msg_send_many(api: Api, messages: list[dict]) -> None:
    for m in messages:
        if m["to"] == "FRIEND":
            m["to"] = api.friend.node_id
    res = api.call(api.client.msg_send_many, messages)
    if isinstance(res, list):
        assert len(res) == len(messages)


@budget(200)
@given(
    ttl_ms=UINT64,
    uses=st.none() | UINT32,
    scopes=LISTS,
    relay_hosts=LISTS,
    endpoints=LISTS,
    alias=TEXT,
    rate=st.none() | st.tuples(FLOATS, UINT32),
)
@example(ttl_ms=2**64 - 1, uses=None, scopes=[], relay_hosts=[], endpoints=[], alias="", rate=None)
@example(
    ttl_ms=1, uses=2**32 - 1, scopes=["message"], relay_hosts=[], endpoints=[], alias="", rate=(1e308, 1)
)
def test_invite_create(
    api: Api,
    ttl_ms: int,
    uses: int | None,
    scopes: list[str],
    relay_hosts: list[str],
    endpoints: list[str],
    alias: str,
    rate: tuple[float, int] | None,
) -> None:
    res = api.call(
        api.client.invite_create,
        ttl_ms=ttl_ms,
        uses=uses,
        scopes=scopes,
        relay_hosts=relay_hosts,
        endpoints=endpoints,
        alias=alias,
        rate_limit=rate,
    )
    if isinstance(res, dict):
        assert res["token"].startswith("tmaxinv1.")
        if rate is not None:
            assert math.isfinite(rate[0]) and rate[0] > 0 and rate[1] > 0


@budget(200)
@given(token=st.one_of(TEXT, st.text(max_size=40).map(lambda t: "tmaxinv1." + t)), alias=TEXT)
def test_invite_accept(api: Api, token: str, alias: str) -> None:
    res = api.call(api.client.invite_accept, token, alias)
    assert isinstance(res, MeshError), res


@budget(200)
@given(
    which=st.sampled_from(["status", "wait", "revoke", "ack", "ack_many"]),
    ident=HEXISH,
    timeout=st.one_of(st.floats(-1e9, 2.0), st.sampled_from([0.0, -0.0, 1e-9])),
)
def test_ids(api: Api, which: str, ident: str, timeout: float) -> None:
    c = api.client
    if which == "status":
        api.call(c.msg_status, ident)
    elif which == "wait":
        api.call(c.msg_wait, ident, timeout)
    elif which == "revoke":
        api.call(c.invite_revoke, ident)
    elif which == "ack":
        api.call(c.inbox_ack, [ident])
    else:
        api.call(c.inbox_ack, [ident] * 3 + [""])


@budget(200)
@given(which=st.sampled_from(["block", "unblock", "remove"]), ref=HEXISH)
def test_friend_refs(api: Api, which: str, ref: str) -> None:
    assume(not api.protected(ref))
    c = api.client
    if which == "remove":
        api.call(c.friend_remove, ref)
    else:
        api.call(c.friend_block, ref, which == "block")


@budget(100)
@given(unread=st.booleans(), limit=UINT32)
def test_inbox_list(api: Api, unread: bool, limit: int) -> None:
    res = api.call(api.client.inbox_list, unread, limit)
    assert isinstance(res, list)


def test_after_campaign_node_works(api: Api) -> None:
    """Still answering, still delivering to its friend, no traceback, bounded memory."""
    assert api.node.alive()
    c = api.client
    assert c.node_info()["node_id"] == api.node.node_id
    sent = c.msg_send(api.friend.node_id, b"after the api fuzz")
    with JsonNodeClient(api.friend.ready["socket"]) as f:
        wait_for(
            lambda: any(m["body"] == "after the api fuzz" for m in f.inbox_list()),
            timeout=30,
            what="the message after the campaign",
        )
    assert c.msg_wait(sent["message_id"], 20)["status"] == "delivered"
    growth_mb = (vm_rss_kb(api.node.pid) - api.rss_start_kb) / 1024
    print(f"api campaign: {api.calls} calls, {api.errors} clear errors; node RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 50, growth_mb
    log = api.node.log_path.read_text(errors="replace")
    assert tracebacks(log) == 0, first_traceback(log)
