"""gRPC servicer ``tmax_mesh.session_mailbox.v1.SessionMailbox``: protobuf in,
:class:`~tmax_mesh_session_mailbox.mailbox.SessionMailbox` calls, protobuf out.

Errors follow the core API: the :class:`~tmax_core.errors.MeshError` code goes
into the trailing metadata ``tmax-error-code``, the message into the details.
"""

from __future__ import annotations

from typing import Any

import grpc

from tmax_core.errors import UsageError
from tmax_core.plugin.helpers import parse_hex_id, to_checksum, translate_errors
from tmax_mesh_session_mailbox.mailbox import SessionMailbox
from tmax_mesh_session_mailbox.proto import session_mailbox_pb2 as pb
from tmax_mesh_session_mailbox.proto import session_mailbox_pb2_grpc as pb_grpc
from tmax_mesh_session_mailbox.store import SessionMessage


def message_pb(m: SessionMessage) -> pb.SessionMessage:
    return pb.SessionMessage(
        message_id=m.message_id.hex(),
        session=m.session,
        origin=m.origin,
        from_session=m.from_session or "",
        from_node_id=to_checksum(m.from_node_id) if m.from_node_id else "",
        from_alias=m.from_alias or "",
        sent_at_ms=m.sent_at_ms,
        received_at_ms=m.received_at_ms,
        scope=m.scope or "",
        content_type=m.content_type,
        body=m.body,
        acked=m.acked,
        reply_to=m.reply_to.hex() if m.reply_to else "",
    )


class SessionMailboxServicer(pb_grpc.SessionMailboxServicer):
    def __init__(self, mailbox: SessionMailbox) -> None:
        self.mailbox = mailbox

    @translate_errors
    async def Send(self, request: pb.SendRequest, context: Any) -> pb.SessionMessage:
        reply_to = parse_hex_id(request.reply_to, "reply-to message id", 16) if request.reply_to else None
        message = await self.mailbox.send(
            request.from_session, request.to_session, request.body, request.content_type, reply_to
        )
        return message_pb(message)

    @translate_errors
    async def List(self, request: pb.ListRequest, context: Any) -> pb.ListReply:
        messages = await self.mailbox.messages(request.session, request.unread, request.limit)
        return pb.ListReply(messages=[message_pb(m) for m in messages])

    @translate_errors
    async def Ack(self, request: pb.AckRequest, context: Any) -> pb.AckReply:
        if request.all:
            return pb.AckReply(acked=await self.mailbox.ack_all(request.session))
        ids = [parse_hex_id(m, "message id", 16) for m in request.message_ids]
        return pb.AckReply(acked=await self.mailbox.ack(request.session, ids, request.sender))

    @translate_errors
    async def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.DeleteReply:
        if request.acked and request.message_ids:
            raise UsageError("give the ids of the messages to delete, or --acked (not both)")
        if request.acked:
            return pb.DeleteReply(deleted=await self.mailbox.delete_acked(request.session))
        ids = [parse_hex_id(m, "message id", 16) for m in request.message_ids]
        return pb.DeleteReply(deleted=await self.mailbox.delete(request.session, ids, request.sender))

    @translate_errors
    async def Unread(self, request: pb.UnreadRequest, context: Any) -> pb.UnreadReply:
        return pb.UnreadReply(unread=await self.mailbox.unread(request.session))


def add_to_server(server: grpc.aio.Server, mailbox: SessionMailbox) -> None:
    pb_grpc.add_SessionMailboxServicer_to_server(SessionMailboxServicer(mailbox), server)
