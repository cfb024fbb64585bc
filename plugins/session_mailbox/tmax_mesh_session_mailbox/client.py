"""Blocking Python client of the session mailbox service on a node's socket.

Methods return the JSON-shaped dicts that ``tmax-mesh session ... --json``
prints, and raise :class:`~tmax_core.errors.MeshError` with the node's error
code (``usage``, ``not_found``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from tmax_core.errors import ERROR_CODE_KEY, MeshError, NodeNotRunning
from tmax_core.plugin.helpers import body_for_json
from tmax_mesh_session_mailbox.proto import session_mailbox_pb2 as pb
from tmax_mesh_session_mailbox.proto import session_mailbox_pb2_grpc as pb_grpc

PLUGIN_UNAVAILABLE = "plugin_unavailable"


def message_dict(m: pb.SessionMessage) -> dict[str, Any]:
    body, encoding = body_for_json(m.content_type, m.body)
    out: dict[str, Any] = {
        "message_id": m.message_id,
        "session": m.session,
        "origin": m.origin,
        "from_session": m.from_session or None,
        "from_node_id": m.from_node_id or None,
        "from_alias": m.from_alias or None,
        "sent_at_ms": m.sent_at_ms,
        "received_at_ms": m.received_at_ms,
        "scope": m.scope or None,
        "content_type": m.content_type,
        "body": body,
        "acked": m.acked,
        "reply_to": m.reply_to or None,
    }
    if encoding:
        out["body_encoding"] = encoding
    return out


class SessionMailboxClient:
    """Talks to ``tmax_mesh.session_mailbox.v1.SessionMailbox`` on ``socket``."""

    def __init__(self, socket: Path | str, timeout: float = 30.0) -> None:
        self.socket = Path(socket)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix:{self.socket}")
        self._stub = pb_grpc.SessionMailboxStub(self._channel)

    def _call(self, method: str, request: Any, convert: Callable[[Any], Any]) -> Any:
        if not self.socket.exists():
            raise NodeNotRunning(
                f"no tmax-node is running: {self.socket} does not exist; "
                "start one with `tmax-node --state-dir DIR`"
            )
        try:
            return convert(getattr(self._stub, method)(request, timeout=self.timeout))
        except grpc.RpcError as err:
            raise self._error(err) from None

    def _error(self, err: grpc.RpcError) -> MeshError:
        code = dict(err.trailing_metadata() or ()).get(ERROR_CODE_KEY)
        if code is not None:
            return MeshError(err.details() or code, code=code)
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            return MeshError(
                f"the node on {self.socket} does not serve session mailboxes; install "
                "tmax-mesh-session-mailbox where tmax-node runs, make sure TMAX_MESH_DISABLE_PLUGINS "
                "does not name session_mailbox, and restart the node",
                code=PLUGIN_UNAVAILABLE,
            )
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return NodeNotRunning(
                f"no tmax-node is answering on {self.socket}; start one with `tmax-node --state-dir DIR`"
            )
        return MeshError(err.details() or err.code().name, code=err.code().name.lower())

    def send(
        self,
        from_session: str,
        to_session: str,
        body: bytes,
        *,
        content_type: str = "",
        reply_to: str = "",
    ) -> dict[str, Any]:
        req = pb.SendRequest(
            from_session=from_session,
            to_session=to_session,
            body=body,
            content_type=content_type,
            reply_to=reply_to,
        )
        return self._call("Send", req, message_dict)

    def list(self, session: str, *, unread: bool = False, limit: int = 0) -> list[dict[str, Any]]:
        req = pb.ListRequest(session=session, unread=unread, limit=limit)
        return self._call("List", req, lambda r: [message_dict(m) for m in r.messages])

    def ack(
        self, session: str, message_ids: Sequence[str] = (), *, all: bool = False, sender: str = ""
    ) -> dict[str, Any]:
        req = pb.AckRequest(session=session, message_ids=list(message_ids), all=all, sender=sender)
        return self._call("Ack", req, lambda r: {"session": session, "acked": r.acked})

    def delete(
        self, session: str, message_ids: Sequence[str] = (), *, acked: bool = False, sender: str = ""
    ) -> dict[str, Any]:
        req = pb.DeleteRequest(session=session, message_ids=list(message_ids), acked=acked, sender=sender)
        return self._call("Delete", req, lambda r: {"session": session, "deleted": r.deleted})

    def unread(self, session: str) -> dict[str, Any]:
        req = pb.UnreadRequest(session=session)
        return self._call("Unread", req, lambda r: {"session": session, "unread": r.unread})

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SessionMailboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
