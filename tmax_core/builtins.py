"""Core built-ins, registered as the plugin named ``core`` through the same hooks.

The core is not a plugin like the others: its hooks get the whole
:class:`~tmax_core.node.Node` (plugins get :class:`~tmax_core.plugin.NodeAPI`).

Declares the core configuration keys, the built-in ``message`` scope, the
node ``inbox`` sink, the plain ``direct`` transport (dial a friend's known
endpoints) and the core precheck for blocked senders (unknown senders are
turned away by ingress itself, before any hook).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from tmax_core.aliases import alias_problem
from tmax_core.config import validate_duration, validate_endpoints, validate_host_port, validate_positive
from tmax_core.crypto import to_checksum
from tmax_core.errors import QuotaExceeded, Reason
from tmax_core.model import (
    DEFAULT_SCOPE,
    DeliverySink,
    InboxMessage,
    IngressMeta,
    IngressSource,
    InviteScope,
    ReceivedMessage,
    Transport,
    Verdict,
)
from tmax_core.plugin import hookimpl
from tmax_core.store import Quota

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry
    from tmax_core.node import Node

log = logging.getLogger("tmax_mesh.inbox")

# Quotas on unread messages (the session_mailbox plugin uses the same defaults).
DEFAULT_MAX_BYTES_PER_FRIEND = 64 * 1024 * 1024
DEFAULT_MAX_BYTES_TOTAL = 1024 * 1024 * 1024


def _validate_alias(value: str) -> None:
    """node.alias: empty (none), or an alias friends will accept as suggested."""
    if value and (problem := alias_problem(value)):
        raise ValueError(problem)


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    add = registry.add
    add(
        "node.peer_listen",
        str,
        "",
        "HOST:PORT where the node accepts direct peer connections ('' = off)",
        validate=validate_host_port,
    )
    add(
        "node.peer_max_connections",
        int,
        256,
        "most connections the peer listener holds at once (more are closed at once); "
        "also bounds its calls in flight (twice this)",
        validate=validate_positive,
    )
    add(
        "node.peer_advertise",
        list,
        [],
        "HOST:PORT endpoints friends dial instead of node.peer_listen as bound (a forwarded "
        "port, a container's published port); a wildcard host (0.0.0.0:PORT) means the address "
        "the relay host sees the node at",
        validate=validate_endpoints,
    )
    add("node.relays", list, [], "relay host URLs the node connects to")
    add(
        "node.alias",
        str,
        "",
        "a human name for this node, suggested to friends (not 0x..., no control characters)",
        validate=_validate_alias,
    )
    add(
        "messages.max_bytes",
        int,
        1048576,
        "largest envelope accepted or sent, in bytes",
        validate=validate_positive,
    )
    add(
        "messages.ttl",
        str,
        "24h",
        "how long an outgoing message is retried before it fails",
        validate=validate_duration,
    )
    add(
        "messages.replay_window",
        str,
        "10m",
        "maximum clock difference accepted on an inbound message's timestamp",
        validate=validate_duration,
    )
    add(
        "messages.seen_retention",
        str,
        "7d",
        "how long received message ids are remembered to drop duplicates",
        validate=validate_duration,
    )
    add(
        "messages.retry_initial",
        str,
        "1s",
        "first retry delay for an outgoing message",
        validate=validate_duration,
    )
    add(
        "messages.retry_max",
        str,
        "60s",
        "longest retry delay (exponential backoff cap)",
        validate=validate_duration,
    )
    add("delivery.sinks", list, ["inbox"], "delivery sinks that receive accepted messages, by name")
    add(
        "inbox.max_bytes_per_friend",
        int,
        DEFAULT_MAX_BYTES_PER_FRIEND,
        "most bytes of unread messages one friend may have in the inbox; beyond it the friend's "
        "messages are refused (quota_exceeded) until some are acked or deleted",
        validate=validate_positive,
    )
    add(
        "inbox.max_bytes_total",
        int,
        DEFAULT_MAX_BYTES_TOTAL,
        "most bytes of unread messages from all friends together in the inbox",
        validate=validate_positive,
    )
    add(
        "invites.default_ttl",
        str,
        "24h",
        "lifetime of a new invite when --ttl is not given",
        validate=validate_duration,
    )


@hookimpl
def tmax_register_invite_scopes(register: Callable[[InviteScope], None]) -> None:
    register(InviteScope(DEFAULT_SCOPE, "plain messages"))


class InboxSink:
    """The node-level inbox in state.db (idempotent by message id), within
    the ``inbox.max_bytes_*`` quotas."""

    name = "inbox"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.quota = Quota(
            per_sender=node.config.get("inbox.max_bytes_per_friend"),
            total=node.config.get("inbox.max_bytes_total"),
        )

    async def deliver(self, message: ReceivedMessage) -> None:
        if await self.deliver_many([message]):
            raise QuotaExceeded("the inbox has no room for this message within its quota")

    async def deliver_many(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """All in one transaction (the node calls this for a batch); returns
        the messages refused for lack of quota."""
        rows = [
            InboxMessage(
                message_id=m.message_id,
                from_node_id=m.from_node_id,
                from_alias=m.from_alias,
                sent_at_ms=m.sent_at_ms,
                received_at_ms=m.received_at_ms,
                scope=m.scope,
                content_type=m.content_type,
                body=m.body,
                reply_to=m.reply_to,
            )
            for m in messages
        ]
        insert = functools.partial(self.node.store.inbox_insert_within_quota, quota=self.quota)
        stored, refused = await self.node.db_batch(insert, rows)
        self.node.inbox_feed.publish(stored)
        if log.isEnabledFor(logging.DEBUG):
            for _rowid, m in stored:
                log.debug(
                    "message %s from %s: stored in the inbox",
                    m.message_id.hex(),
                    to_checksum(m.from_node_id),
                    extra={"message_id": m.message_id.hex(), "event": "stored"},
                )
        over = {id(row) for row in refused}
        return [m for m, row in zip(messages, rows, strict=True) if id(row) in over]


@hookimpl
def tmax_register_delivery_sinks(register: Callable[[DeliverySink], None], node: Node) -> None:
    register(InboxSink(node))


@hookimpl
def tmax_register_transports(register: Callable[[Transport], None], node: Node) -> None:
    from tmax_core.peer import DirectTransport

    register(DirectTransport(node))


@hookimpl
def tmax_ingress_precheck(meta: IngressMeta, source: IngressSource) -> Verdict | None:
    # Strangers that name no active invite never get here: ingress turns them
    # away itself, before any hook, so that no plugin set can make them cost more.
    if meta.friend is not None and meta.friend.blocked:
        return Verdict(Reason.BLOCKED, "the recipient has blocked this sender")
    return None
