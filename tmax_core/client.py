"""Python clients of the local node API: :class:`NodeClient` (blocking) and
:class:`AsyncNodeClient` (asyncio). Both return the JSON-shaped dicts of the
command-line contract (DESIGN §14) and raise :class:`~tmax_core.errors.MeshError`.

The methods are written once in :class:`_Methods`; each client only supplies
``_call`` (blocking or awaitable).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from tmax_core.errors import ERROR_CODE_KEY, MeshError, NodeNotRunning
from tmax_core.proto import node_pb2 as pb
from tmax_core.proto import node_pb2_grpc

TEXT_TYPES = ("text/", "application/json")


def body_for_json(content_type: str, body: bytes) -> tuple[str, str | None]:
    """Text bodies as text; anything else base64 (DESIGN §14). Returns (body, encoding)."""
    if content_type.startswith(TEXT_TYPES):
        try:
            return body.decode("utf-8"), None
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), "base64"


def friend_dict(f: pb.Friend) -> dict[str, Any]:
    return {
        "node_id": f.node_id,
        "alias": f.alias or None,
        "blocked": f.blocked,
        "scopes": list(f.scopes),
        "relay_hosts": list(f.relay_hosts),
        "endpoints": list(f.endpoints),
        "added_at_ms": f.added_at_ms,
        "last_seen_ms": f.last_seen_ms or None,
        "rate_limit": {"rate_per_s": f.rate_limit.rate_per_s, "burst": f.rate_limit.burst}
        if f.HasField("rate_limit")
        else None,
    }


def msg_dict(m: pb.MsgState) -> dict[str, Any]:
    return {
        "message_id": m.message_id,
        "status": m.status,
        "path": m.path or None,
        "attempts": m.attempts,
        "error": m.error or None,
        "to": m.to,
        "created_at_ms": m.created_at_ms,
        "delivered_at_ms": m.delivered_at_ms or None,
    }


def inbox_dict(m: pb.InboxMessage) -> dict[str, Any]:
    body, encoding = body_for_json(m.content_type, m.body)
    out = {
        "message_id": m.message_id,
        "from_node_id": m.from_node_id,
        "from_alias": m.from_alias or None,
        "sent_at_ms": m.sent_at_ms,
        "received_at_ms": m.received_at_ms,
        "scope": m.scope,
        "content_type": m.content_type,
        "body": body,
        "acked": m.acked,
        "reply_to": m.reply_to or None,
    }
    if encoding:
        out["body_encoding"] = encoding
    return out


def invite_dict(i: pb.IssuedInvite) -> dict[str, Any]:
    return {
        "token_id": i.token_id,
        "expires_at_ms": i.expires_at_ms,
        "uses_left": None if i.uses_left < 0 else i.uses_left,
        "scopes": list(i.scopes),
        "created_at_ms": i.created_at_ms,
        "revoked": i.revoked,
        "max_uses": i.max_uses,
    }


def status_dict(s: pb.NodeStatusReply) -> dict[str, Any]:
    import json

    return {
        "node_id": s.node_id,
        "friends": s.friends,
        "peer_listen": s.peer_listen or None,
        "uptime_ms": s.uptime_ms,
        "inbox_unread": s.inbox_unread,
        "outbox": dict(s.outbox),
        "sinks": list(s.sinks),
        "counters": dict(sorted(s.counters.items())),
        "transports": [
            {"name": t.name, "state": t.state, **json.loads(t.details_json or "{}")} for t in s.transports
        ],
    }


def _error(err: grpc.RpcError, socket: Path) -> MeshError:
    code = dict(err.trailing_metadata() or ()).get(ERROR_CODE_KEY)
    if code is None and err.code() == grpc.StatusCode.UNAVAILABLE:
        return NodeNotRunning(
            f"no tmax-node is answering on {socket}; start one with `tmax-node --state-dir {socket.parent}`"
        )
    return MeshError(err.details() or err.code().name, code=code or err.code().name.lower())


class _Methods:
    """The API, written once; ``_call`` is blocking or returns an awaitable."""

    _call: Callable[..., Any]

    def node_info(self) -> Any:
        return self._call(
            "NodeInfo",
            pb.Empty(),
            lambda r: {
                "node_id": r.node_id,
                "public_key": r.public_key,
                "state_dir": r.state_dir,
                "socket": r.socket,
                "version": r.version,
            },
        )

    def node_status(self) -> Any:
        return self._call("NodeStatus", pb.Empty(), status_dict)

    def invite_create(
        self,
        *,
        ttl_ms: int = 0,
        uses: int | None = None,
        scopes: Sequence[str] = (),
        relay_hosts: Sequence[str] = (),
        endpoints: Sequence[str] = (),
        alias: str = "",
        rate_limit: tuple[float, int] | None = None,
    ) -> Any:
        req = pb.InviteCreateRequest(
            ttl_ms=ttl_ms,
            uses=uses or 0,
            uses_set=uses is not None,
            scopes=scopes,
            relay_hosts=relay_hosts,
            endpoints=endpoints,
            alias=alias,
            rate_limit=pb.RateLimit(rate_per_s=rate_limit[0], burst=rate_limit[1]) if rate_limit else None,
        )
        return self._call(
            "InviteCreate",
            req,
            lambda r: {
                "token": r.token,
                "token_id": r.token_id,
                "expires_at_ms": r.expires_at_ms,
                "uses": r.uses or None,
                "scopes": list(r.scopes),
                "relay_hosts": list(r.relay_hosts),
                "endpoints": list(r.endpoints),
            },
        )

    def invite_accept(self, token: str, alias: str | None = None) -> Any:
        return self._call("InviteAccept", pb.InviteAcceptRequest(token=token, alias=alias or ""), friend_dict)

    def invite_list(self, all: bool = False) -> Any:
        return self._call(
            "InviteList", pb.InviteListRequest(all=all), lambda r: [invite_dict(i) for i in r.invites]
        )

    def invite_revoke(self, token_id: str) -> Any:
        return self._call(
            "InviteRevoke",
            pb.InviteRevokeRequest(token_id=token_id),
            lambda r: {"token_id": token_id, "revoked": True},
        )

    def friends_list(self) -> Any:
        return self._call("FriendsList", pb.Empty(), lambda r: [friend_dict(f) for f in r.friends])

    def friend_block(self, ref: str, blocked: bool = True) -> Any:
        return self._call("FriendBlock", pb.FriendBlockRequest(ref=ref, blocked=blocked), friend_dict)

    def friend_remove(self, ref: str) -> Any:
        return self._call("FriendRemove", pb.FriendRef(ref=ref), lambda r: {"removed": ref})

    def msg_send(
        self,
        to: str,
        body: bytes,
        *,
        scope: str = "",
        content_type: str = "",
        ttl_ms: int = 0,
        reply_to: str = "",
    ) -> Any:
        req = pb.MsgSendRequest(
            to=to, body=body, scope=scope, content_type=content_type, ttl_ms=ttl_ms, reply_to=reply_to
        )
        return self._call("MsgSend", req, msg_dict)

    def msg_send_many(self, messages: list[dict[str, Any]]) -> Any:
        """Send several messages in one call (one transaction on the node).

        Each item has ``to`` and ``body`` and optionally ``scope``,
        ``content_type``, ``ttl_ms`` and ``reply_to``, as for :meth:`msg_send`."""
        req = pb.MsgSendBatchRequest(messages=[pb.MsgSendRequest(**m) for m in messages])
        return self._call("MsgSendBatch", req, lambda r: [msg_dict(m) for m in r.messages])

    def msg_status(self, message_id: str) -> Any:
        return self._call("MsgStatus", pb.MsgStatusRequest(message_id=message_id), msg_dict)

    def msg_wait(self, message_id: str, timeout_s: float) -> Any:
        return self._call(
            "MsgWait",
            pb.MsgWaitRequest(message_id=message_id, timeout_s=timeout_s),
            msg_dict,
            timeout=max(timeout_s, 0.0) + 10,  # the node answers a bad timeout itself
        )

    def inbox_list(self, unread: bool = False, limit: int = 0) -> Any:
        return self._call(
            "InboxList",
            pb.InboxListRequest(unread=unread, limit=limit),
            lambda r: [inbox_dict(m) for m in r.messages],
        )

    def inbox_ack(self, message_ids: Sequence[str] = (), all: bool = False, sender: str = "") -> Any:
        return self._call(
            "InboxAck",
            pb.InboxAckRequest(message_ids=message_ids, all=all, sender=sender),
            lambda r: {"acked": r.acked},
        )

    def inbox_delete(self, message_ids: Sequence[str] = (), acked: bool = False, sender: str = "") -> Any:
        return self._call(
            "InboxDelete",
            pb.InboxDeleteRequest(message_ids=message_ids, acked=acked, sender=sender),
            lambda r: {"deleted": r.deleted},
        )

    def inbox_unread(self) -> Any:
        return self._call("InboxUnread", pb.Empty(), lambda r: {"unread": r.unread})


class NodeClient(_Methods):
    """Blocking client; use as a context manager or call :meth:`close`."""

    def __init__(self, socket: Path | str, timeout: float = 30.0) -> None:
        self.socket = Path(socket)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix:{self.socket}")
        self._stub = node_pb2_grpc.NodeApiStub(self._channel)

    def _call(
        self, method: str, request: Any, convert: Callable[[Any], Any], timeout: float | None = None
    ) -> Any:
        if not self.socket.exists():
            raise NodeNotRunning(
                f"no tmax-node is running: {self.socket} does not exist; "
                f"start one with `tmax-node --state-dir {self.socket.parent}`"
            )
        try:
            return convert(getattr(self._stub, method)(request, timeout=timeout or self.timeout))
        except grpc.RpcError as err:
            raise _error(err, self.socket) from None

    def inbox_watch(self, include_existing_unread: bool = False) -> Iterator[dict[str, Any]]:
        """Yield inbox messages as they arrive, until the node stops or the caller breaks."""
        try:
            for m in self._stub.InboxWatch(
                pb.InboxWatchRequest(include_existing_unread=include_existing_unread)
            ):
                yield inbox_dict(m)
        except grpc.RpcError as err:
            raise _error(err, self.socket) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncNodeClient(_Methods):
    """asyncio client; every API method returns an awaitable."""

    def __init__(self, socket: Path | str, timeout: float = 30.0) -> None:
        self.socket = Path(socket)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(f"unix:{self.socket}")
        self._stub = node_pb2_grpc.NodeApiStub(self._channel)

    async def _call(
        self, method: str, request: Any, convert: Callable[[Any], Any], timeout: float | None = None
    ) -> Any:
        try:
            return convert(await getattr(self._stub, method)(request, timeout=timeout or self.timeout))
        except grpc.RpcError as err:
            raise _error(err, self.socket) from None

    async def inbox_watch(self, include_existing_unread: bool = False) -> AsyncIterator[dict[str, Any]]:
        call = self._stub.InboxWatch(pb.InboxWatchRequest(include_existing_unread=include_existing_unread))
        try:
            async for m in call:
                yield inbox_dict(m)
        except grpc.RpcError as err:
            raise _error(err, self.socket) from None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncNodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
