"""Hook implementations of the ``session_mailbox`` plugin.

* config ``session_mailbox.session``: the session remote messages land in,
  and ``session_mailbox.max_bytes_per_friend`` / ``max_bytes_total``: quotas
  on the unread remote messages;
* delivery sink ``session_mailbox`` (used when ``delivery.sinks`` names it);
* gRPC service ``tmax_mesh.session_mailbox.v1.SessionMailbox`` on the local API;
* CLI ``tmax-mesh session send|list|ack|delete|unread``.

One :class:`~tmax_mesh_session_mailbox.mailbox.SessionMailbox` per running
node, opened on first use (``<state_dir>/sessions.db``), kept in the node's
plugin state and closed when the node object goes away or the process exits.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from tmax_core.plugin import hookimpl
from tmax_core.plugin.helpers import (
    DEFAULT_MAX_BYTES_PER_FRIEND,
    DEFAULT_MAX_BYTES_TOTAL,
    Quota,
    validate_positive,
)
from tmax_mesh_session_mailbox.store import validate_session_name

if TYPE_CHECKING:
    import grpc

    from tmax_core.model import DeliverySink
    from tmax_core.plugin import NodeAPI
    from tmax_core.plugin.helpers import CommandRegistry, ConfigRegistry
    from tmax_mesh_session_mailbox.mailbox import SessionMailbox

# The CLI loads every plugin on each run: node-side modules (the mailbox, the
# servicer) are imported inside the hooks that need them.

PLUGIN = "session_mailbox"


def mailbox_for(node: NodeAPI) -> SessionMailbox:
    """The mailbox of ``node``, opened on first use."""

    def open_mailbox() -> SessionMailbox:
        from tmax_mesh_session_mailbox.mailbox import SessionMailbox

        quota = Quota(
            per_sender=node.config.get("session_mailbox.max_bytes_per_friend"),
            total=node.config.get("session_mailbox.max_bytes_total"),
        )
        mailbox = SessionMailbox.open(node.state_dir, node.friends, quota)
        weakref.finalize(node, mailbox.close)  # the mailbox holds no reference back to the node
        return mailbox

    return node.plugin_state(PLUGIN, open_mailbox)


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    registry.add(
        "session_mailbox.session",
        str,
        "root",
        "local session whose mailbox receives remote messages",
        validate=validate_session_name,
    )
    registry.add(
        "session_mailbox.max_bytes_per_friend",
        int,
        DEFAULT_MAX_BYTES_PER_FRIEND,
        "most bytes of unread messages one friend may have in the session mailboxes; beyond it "
        "the friend's messages are refused (quota_exceeded) until some are acked or deleted",
        validate=validate_positive,
    )
    registry.add(
        "session_mailbox.max_bytes_total",
        int,
        DEFAULT_MAX_BYTES_TOTAL,
        "most bytes of unread messages from all friends together in the session mailboxes",
        validate=validate_positive,
    )


@hookimpl
def tmax_register_delivery_sinks(register: Callable[[DeliverySink], None], node: NodeAPI) -> None:
    from tmax_mesh_session_mailbox.mailbox import SessionMailboxSink

    register(SessionMailboxSink(mailbox_for(node), node.config.get("session_mailbox.session")))


@hookimpl
def tmax_register_services(server: grpc.aio.Server, node: NodeAPI) -> None:
    from tmax_mesh_session_mailbox.service import add_to_server

    add_to_server(server, mailbox_for(node))


@hookimpl
def tmax_register_commands(cli: CommandRegistry) -> None:
    from tmax_mesh_session_mailbox.cli import register

    register(cli)
