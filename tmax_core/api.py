"""The local API servicer: protobuf in, domain calls, protobuf out.

Errors become gRPC status errors whose trailing metadata ``tmax-error-code``
carries the :class:`~tmax_core.errors.MeshError` code, so the client can
raise the same error on the other side.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import grpc

from tmax_core import __version__
from tmax_core.crypto import looks_like_node_id, parse_node_id, to_checksum
from tmax_core.crypto import parse_hex_id as hex_id
from tmax_core.errors import ERROR_CODE_KEY, MeshError, UsageError
from tmax_core.friendstatus import path_now
from tmax_core.model import (
    DEFAULT_SCOPE,
    Friend,
    InboxMessage,
    IssuedInvite,
    OutboxEntry,
    OutgoingMessage,
    RateLimit,
)
from tmax_core.node import Node
from tmax_core.proto import node_pb2 as pb
from tmax_core.proto import node_pb2_grpc
from tmax_core.results import TRANSPORT_FIELDS

log = logging.getLogger("tmax_mesh.api")

MAX_SEND_BATCH = 1000
_STATUS_FOR = {"not_found": grpc.StatusCode.NOT_FOUND, "usage": grpc.StatusCode.INVALID_ARGUMENT}


def translate_errors(method: Callable) -> Callable:
    """Servicer decorator: MeshError/ValueError -> gRPC status + ``tmax-error-code`` trailer
    (plugins' local-API servicers use it too)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except MeshError as err:
            context.set_trailing_metadata(((ERROR_CODE_KEY, err.code),))
            await context.abort(_STATUS_FOR.get(err.code, grpc.StatusCode.FAILED_PRECONDITION), str(err))
        except ValueError as err:
            context.set_trailing_metadata(((ERROR_CODE_KEY, "usage"),))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except OverflowError:  # e.g. a ttl so large the expiry time does not fit the database
            context.set_trailing_metadata(((ERROR_CODE_KEY, "usage"),))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a number in the request is out of range")
        except sqlite3.Error as err:  # e.g. the disk holding the state dir is full
            log.warning("%s: state database error: %s", method.__name__, err)
            context.set_trailing_metadata(((ERROR_CODE_KEY, "storage"),))
            full = "full" in str(err).lower()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.INTERNAL,
                f"state database error in {self.node.state_dir}: {err}",
            )

    return wrapper


def friend_pb(f: Friend) -> pb.Friend:
    return pb.Friend(
        node_id=to_checksum(f.node_id),
        alias=f.alias or "",
        blocked=f.blocked,
        scopes=f.scopes,
        relay_hosts=f.relay_hosts,
        endpoints=f.endpoints,
        added_at_ms=f.added_at_ms,
        last_seen_ms=f.last_seen_ms or 0,
        rate_limit=pb.RateLimit(rate_per_s=f.rate_limit.rate_per_s, burst=f.rate_limit.burst)
        if f.rate_limit
        else None,
    )


def invite_pb(i: IssuedInvite) -> pb.IssuedInvite:
    return pb.IssuedInvite(
        token_id=i.token_id.hex(),
        expires_at_ms=i.expires_at_ms,
        uses_left=-1 if i.uses_left is None else i.uses_left,
        scopes=i.scopes,
        created_at_ms=i.created_at_ms,
        revoked=i.revoked,
        max_uses=i.max_uses,
    )


def msg_state_pb(e: OutboxEntry) -> pb.MsgState:
    return pb.MsgState(
        message_id=e.message_id.hex(),
        status=e.status,
        path=e.path or "",
        attempts=e.attempts,
        error=e.error or "",
        to=to_checksum(e.to_node_id),
        created_at_ms=e.created_at_ms,
        delivered_at_ms=e.delivered_at_ms or 0,
    )


def inbox_pb(m: InboxMessage) -> pb.InboxMessage:
    return pb.InboxMessage(
        message_id=m.message_id.hex(),
        from_node_id=to_checksum(m.from_node_id),
        from_alias=m.from_alias or "",
        sent_at_ms=m.sent_at_ms,
        received_at_ms=m.received_at_ms,
        scope=m.scope,
        content_type=m.content_type,
        body=m.body,
        acked=m.acked,
        reply_to=m.reply_to.hex() if m.reply_to else "",
    )


def outgoing(request: pb.MsgSendRequest) -> OutgoingMessage:
    return OutgoingMessage(
        to=request.to,
        body=request.body,
        scope=request.scope or DEFAULT_SCOPE,
        content_type=request.content_type or "text/plain",
        ttl_ms=request.ttl_ms or None,
        reply_to=hex_id(request.reply_to, "reply-to id", 16) if request.reply_to else None,
    )


class NodeApiServicer(node_pb2_grpc.NodeApiServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    @translate_errors
    async def NodeInfo(self, request: pb.Empty, context: Any) -> pb.NodeInfoReply:
        n = self.node
        return pb.NodeInfoReply(
            node_id=n.node_id_hex,
            public_key=n.identity.public_key.hex(),
            state_dir=str(n.state_dir),
            socket=str(n.socket_path),
            version=__version__,
        )

    @translate_errors
    async def NodeStatus(self, request: pb.Empty, context: Any) -> pb.NodeStatusReply:
        import json

        s = await self.node.status()
        return pb.NodeStatusReply(
            node_id=s["node_id"],
            friends=s["friends"],
            peer_listen=s["peer_listen"] or "",
            uptime_ms=s["uptime_ms"],
            inbox_unread=s["inbox_unread"],
            outbox=s["outbox"],
            sinks=s["sinks"],
            counters=s["counters"],
            transports=[
                pb.TransportStatus(
                    name=t["name"],
                    state=t["state"],
                    details_json=json.dumps({k: v for k, v in t.items() if k not in TRANSPORT_FIELDS}),
                )
                for t in s["transports"]
            ],
        )

    @translate_errors
    async def InviteCreate(self, request: pb.InviteCreateRequest, context: Any) -> pb.InviteCreateReply:
        rate = None
        if request.HasField("rate_limit"):
            rate = RateLimit(request.rate_limit.rate_per_s, request.rate_limit.burst)
        inv = await self.node.create_invite(
            ttl_ms=request.ttl_ms or None,
            uses=request.uses if request.uses_set else None,
            scopes=list(request.scopes),
            relay_hosts=list(request.relay_hosts),
            endpoints=list(request.endpoints),
            alias=request.alias or None,
            rate_limit=rate,
        )
        return pb.InviteCreateReply(
            token=inv.token,
            token_id=inv.token_id.hex(),
            expires_at_ms=inv.expires_at_ms,
            uses=inv.max_uses,
            scopes=inv.scopes,
            relay_hosts=inv.relay_hosts,
            endpoints=inv.endpoints,
        )

    @translate_errors
    async def InviteAccept(self, request: pb.InviteAcceptRequest, context: Any) -> pb.Friend:
        return friend_pb(await self.node.accept_invite(request.token, request.alias or None))

    @translate_errors
    async def InviteList(self, request: pb.InviteListRequest, context: Any) -> pb.InviteListReply:
        invites = await self.node.db(self.node.store.list_issued_invites, request.all)
        return pb.InviteListReply(invites=[invite_pb(i) for i in invites])

    @translate_errors
    async def InviteRevoke(self, request: pb.InviteRevokeRequest, context: Any) -> pb.Empty:
        token_id = hex_id(request.token_id, "token id", 16)
        await self.node.revoke_invite(token_id)
        return pb.Empty()

    @translate_errors
    async def FriendsList(self, request: pb.Empty, context: Any) -> pb.FriendsListReply:
        return pb.FriendsListReply(friends=[friend_pb(f) for f in await self.node.list_friends()])

    @translate_errors
    async def FriendsStatus(self, request: pb.Empty, context: Any) -> pb.FriendsStatusReply:
        outbox = await self.node.db(self.node.store.outbox_counts_by_friend)
        return pb.FriendsStatusReply(
            friends=[
                pb.FriendStatus(
                    node_id=to_checksum(f.node_id),
                    alias=f.alias or "",
                    path=path_now(f, self.node.transports),
                    last_seen_ms=f.last_seen_ms or 0,
                    blocked=f.blocked,
                    outbox=outbox.get(f.node_id, {}),
                )
                for f in await self.node.list_friends()
            ]
        )

    @translate_errors
    async def FriendBlock(self, request: pb.FriendBlockRequest, context: Any) -> pb.Friend:
        return friend_pb(await self.node.set_blocked(request.ref, request.blocked))

    @translate_errors
    async def FriendRemove(self, request: pb.FriendRef, context: Any) -> pb.Empty:
        await self.node.remove_friend(request.ref)
        return pb.Empty()

    @translate_errors
    async def MsgSend(self, request: pb.MsgSendRequest, context: Any) -> pb.MsgState:
        (entry,) = await self.node.send_many([outgoing(request)])
        return msg_state_pb(entry)

    @translate_errors
    async def MsgSendBatch(self, request: pb.MsgSendBatchRequest, context: Any) -> pb.MsgSendBatchReply:
        if len(request.messages) > MAX_SEND_BATCH:
            raise UsageError(f"at most {MAX_SEND_BATCH} messages per batch")
        entries = await self.node.send_many([outgoing(m) for m in request.messages])
        return pb.MsgSendBatchReply(messages=[msg_state_pb(e) for e in entries])

    @translate_errors
    async def MsgStatus(self, request: pb.MsgStatusRequest, context: Any) -> pb.MsgState:
        return msg_state_pb(await self.node.message_status(hex_id(request.message_id, "message id", 16)))

    @translate_errors
    async def MsgWait(self, request: pb.MsgWaitRequest, context: Any) -> pb.MsgState:
        if request.timeout_s <= 0:
            raise UsageError("timeout must be positive")
        entry = await self.node.wait_message(hex_id(request.message_id, "message id", 16), request.timeout_s)
        return msg_state_pb(entry)

    @translate_errors
    async def InboxList(self, request: pb.InboxListRequest, context: Any) -> pb.InboxListReply:
        rows = await self.node.db(self.node.store.inbox_list, request.unread, request.limit or None, 0)
        return pb.InboxListReply(messages=[inbox_pb(m) for _rowid, m in rows])

    @translate_errors
    async def InboxAck(self, request: pb.InboxAckRequest, context: Any) -> pb.InboxAckReply:
        store = self.node.store
        if request.all:
            count = await self.node.db(store.inbox_ack_all)
        else:
            if not request.message_ids:
                raise UsageError("give message ids to ack, or --all")
            ids = [hex_id(m, "message id", 16) for m in request.message_ids]
            count = await self.node.db(store.inbox_ack, ids, self._sender(request.sender))
        return pb.InboxAckReply(acked=count)

    @translate_errors
    async def InboxDelete(self, request: pb.InboxDeleteRequest, context: Any) -> pb.InboxDeleteReply:
        store = self.node.store
        if request.acked == bool(request.message_ids):
            raise UsageError("give the ids of the messages to delete, or --acked (not both)")
        if request.acked:
            count = await self.node.db(store.inbox_delete_acked)
        else:
            ids = [hex_id(m, "message id", 16) for m in request.message_ids]
            count = await self.node.db(store.inbox_delete, ids, self._sender(request.sender))
        return pb.InboxDeleteReply(deleted=count)

    def _sender(self, ref: str) -> bytes | None:
        """``--from``: a node id (a friend or not any more) or a friend's alias."""
        if not ref:
            return None
        return parse_node_id(ref) if looks_like_node_id(ref) else self.node.find_friend(ref).node_id

    @translate_errors
    async def InboxUnread(self, request: pb.Empty, context: Any) -> pb.InboxUnreadReply:
        return pb.InboxUnreadReply(unread=await self.node.db(self.node.store.inbox_unread))

    async def InboxWatch(self, request: pb.InboxWatchRequest, context: Any):
        async for message in self.node.watch_inbox(request.include_existing_unread):
            yield inbox_pb(message)
