"""The session mailboxes of one running node, and the delivery sink into them.

:class:`SessionMailbox` is the async domain API the gRPC servicer and the sink
call. SQLite is blocking, so every store call runs on the mailbox's own
single worker thread (calls are serialized, the event loop never blocks).
The plugin uses its own thread rather than the core's database thread so
that it does not depend on the core's shutdown order: a message that arrives
while the node is stopping can still be stored.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tmax_core.errors import NotFound, QuotaExceeded, UsageError
from tmax_core.model import Friend, ReceivedMessage
from tmax_core.plugin.helpers import (
    DEFAULT_MAX_BYTES_PER_FRIEND,
    DEFAULT_MAX_BYTES_TOTAL,
    Quota,
    alias_key,
    looks_like_node_id,
    now_ms,
    parse_node_id,
)
from tmax_mesh_session_mailbox.store import (
    DB_NAME,
    LOCAL,
    REMOTE,
    SessionMessage,
    SessionStore,
    check_session,
)

T = TypeVar("T")
SINK_NAME = "session_mailbox"
DEFAULT_CONTENT_TYPE = "text/plain"
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_QUOTA = Quota(per_sender=DEFAULT_MAX_BYTES_PER_FRIEND, total=DEFAULT_MAX_BYTES_TOTAL)


class SessionMailbox:
    """Send, list, ack and count messages of local sessions; store remote ones.

    ``friends`` is the node's live ``node_id -> Friend`` map, used to tag a
    remote message with the sender's alias when ingress did not set one.
    ``quota`` bounds the unread remote messages (``session_mailbox.max_bytes_*``).
    """

    def __init__(
        self,
        store: SessionStore,
        friends: Mapping[bytes, Friend] | None = None,
        quota: Quota = DEFAULT_QUOTA,
    ) -> None:
        self.store = store
        self.friends: Mapping[bytes, Friend] = friends if friends is not None else {}
        self.quota = quota
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tmax-sessions")

    @classmethod
    def open(
        cls, state_dir: Path, friends: Mapping[bytes, Friend] | None = None, quota: Quota = DEFAULT_QUOTA
    ) -> SessionMailbox:
        return cls(SessionStore.open(Path(state_dir) / DB_NAME), friends, quota)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args))

    def close(self) -> None:
        """Finish queued calls, then close the database (idempotent)."""
        self._executor.shutdown(wait=True)
        self.store.close()

    # -- local sessions ----------------------------------------------------------

    async def send(
        self,
        from_session: str,
        to_session: str,
        body: bytes,
        content_type: str = "",
        reply_to: bytes | None = None,
    ) -> SessionMessage:
        """Put a message from one local session into another's mailbox."""
        check_session(from_session)
        check_session(to_session)
        if len(body) > MAX_BODY_BYTES:
            raise UsageError(f"message body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        now = now_ms()
        message = SessionMessage(
            message_id=os.urandom(16),
            session=to_session,
            origin=LOCAL,
            from_session=from_session,
            from_node_id=None,
            from_alias=None,
            sent_at_ms=now,
            received_at_ms=now,
            scope=None,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            body=body,
            reply_to=reply_to,
        )
        await self._run(self.store.insert, message)
        return message

    async def messages(self, session: str, unread_only: bool = False, limit: int = 0) -> list[SessionMessage]:
        return await self._run(self.store.list_messages, check_session(session), unread_only, limit or None)

    async def ack(self, session: str, message_ids: list[bytes], sender: str = "") -> int:
        if not message_ids:
            raise UsageError("give message ids to ack, or --all")
        return await self._run(self.store.ack, check_session(session), message_ids, self._sender(sender))

    async def ack_all(self, session: str) -> int:
        return await self._run(self.store.ack_all, check_session(session))

    async def delete(self, session: str, message_ids: list[bytes], sender: str = "") -> int:
        if not message_ids:
            raise UsageError("give the ids of the messages to delete, or --acked")
        return await self._run(self.store.delete, check_session(session), message_ids, self._sender(sender))

    def _sender(self, ref: str) -> bytes | None:
        """``--from``: a node id (a friend or not any more) or a friend's alias."""
        if not ref:
            return None
        if looks_like_node_id(ref):
            return parse_node_id(ref)
        key = alias_key(ref.strip())
        for friend in self.friends.values():
            if friend.alias and alias_key(friend.alias) == key:
                return friend.node_id
        raise NotFound(f"no friend with alias {ref!r}")

    async def delete_acked(self, session: str) -> int:
        return await self._run(self.store.delete_acked, check_session(session))

    async def unread(self, session: str) -> int:
        return await self._run(self.store.unread, check_session(session))

    # -- remote messages -------------------------------------------------------------

    async def deliver(self, session: str, message: ReceivedMessage) -> None:
        """Store a remote message in ``session`` (durable on return), or raise
        :class:`~tmax_core.errors.QuotaExceeded`."""
        if await self.deliver_many(session, [message]):
            raise QuotaExceeded(f"session {session!r} has no room for this message within its quota")

    async def deliver_many(self, session: str, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """Store remote messages in ``session`` in one transaction (durable on
        return) within the quota; returns the ones refused."""
        rows = [self._row(session, m) for m in messages]
        refused = {id(row) for row in await self._run(self.store.insert_remote_many, rows, self.quota)}
        return [m for m, row in zip(messages, rows, strict=True) if id(row) in refused]

    def _row(self, session: str, message: ReceivedMessage) -> SessionMessage:
        alias = message.from_alias
        if alias is None:
            friend = self.friends.get(message.from_node_id)
            alias = friend.alias if friend is not None else None
        return SessionMessage(
            message_id=message.message_id,
            session=session,
            origin=REMOTE,
            from_session=None,
            from_node_id=message.from_node_id,
            from_alias=alias,
            sent_at_ms=message.sent_at_ms,
            received_at_ms=message.received_at_ms,
            scope=message.scope,
            content_type=message.content_type,
            body=message.body,
            reply_to=message.reply_to,
        )


class SessionMailboxSink:
    """Delivery sink ``session_mailbox``: remote messages land in one session.

    The session is ``session_mailbox.session`` (default ``root``), read when
    the node starts. Idempotent by message id (see :mod:`.store`), within the
    mailbox's quota.
    """

    name = SINK_NAME

    def __init__(self, mailbox: SessionMailbox, session: str) -> None:
        self.mailbox = mailbox
        self.session = check_session(session)

    async def deliver(self, message: ReceivedMessage) -> None:
        await self.mailbox.deliver(self.session, message)

    async def deliver_many(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """A batch in one transaction; returns the messages refused for lack of quota."""
        return await self.mailbox.deliver_many(self.session, messages)
