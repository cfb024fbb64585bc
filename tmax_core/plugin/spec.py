"""Hook specifications: the whole contract between the core and plugins.

Rules (see docs/plugins.md):

* Hooks are synchronous. A hook that needs async work *registers an object*
  whose async methods the core awaits.
* Arguments are domain objects from :mod:`tmax_core.model`, never protobuf.
* Arguments may be added in later versions; none is ever renamed or removed.
  Implementations may accept any subset of the arguments (pluggy passes only
  the ones named).
* Order between plugins is set with ``tryfirst``/``trylast``, never by
  install order.

Every hook a running node calls gets that node as ``node``, typed
:class:`~tmax_core.plugin.nodeapi.NodeAPI`: its members are all a plugin may
use of the node, and :meth:`~tmax_core.plugin.nodeapi.NodeAPI.plugin_state`
is where a plugin keeps its per-node state (never in module globals: several
nodes may run in one process). Hooks called without a node
(``tmax_add_config``, ``tmax_register_invite_scopes``,
``tmax_register_commands``) declare what is the same for every node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tmax_core.plugin import hookspec

if TYPE_CHECKING:
    import grpc

    from tmax_core.commands import CommandRegistry
    from tmax_core.config import ConfigRegistry
    from tmax_core.model import (
        DeliverySink,
        Friend,
        IngressMeta,
        IngressSource,
        InviteScope,
        ReceivedMessage,
        Transport,
        Verdict,
    )
    from tmax_core.plugin.nodeapi import NodeAPI


@hookspec(historic=True)
def tmax_add_config(registry: ConfigRegistry) -> None:
    """Declare configuration keys with ``registry.add(key, type, default, help)``.

    Historic: plugins registered after the call still receive it. Keys are
    namespaced by convention with the plugin's name (``relay.hosts``).
    """


@hookspec
def tmax_register_transports(register: Callable[[Transport], None], node: NodeAPI) -> None:
    """Register transports that carry envelopes to friends.

    Call ``register(transport)`` once per transport. A transport has a unique
    ``name`` (``direct``, ``relay``), a ``cost`` (lower is preferred when no
    plugin reorders candidates), async ``start``/``stop``/``send`` and a
    synchronous ``status()`` dict shown by ``tmax-mesh node status``. Inbound
    envelopes are handed to ``node.handle_envelope(data, source)``.
    """


@hookspec(firstresult=True)
def tmax_select_transport(
    friend: Friend, candidates: list[Transport], node: NodeAPI
) -> list[Transport] | None:
    """Order the transports to try for one send to ``friend``.

    ``candidates`` are the registered transports that say they can reach the
    friend, sorted by cost. Return a reordered (or filtered) list, or ``None``
    to leave the decision to the next implementation. The first non-``None``
    answer wins; the default keeps the cost order. ``node`` is the sending node.
    """


@hookspec
def tmax_ingress_precheck(meta: IngressMeta, source: IngressSource, node: NodeAPI) -> Verdict | None:
    """Cheap checks run **before any cryptography** on an inbound envelope.

    ``meta`` holds the unauthenticated header facts (claimed sender, size,
    the stored friend of that claimed id, and for a stranger the invite token
    id it names). ``source`` is what the transport observed. Return a
    :class:`Verdict` to reject (any rejection wins); ``None`` to let it pass.
    Must not block: it runs once per inbound envelope from a friend or from a
    stranger naming an active invite (the core turns other strangers away
    first), including floods of forged ones. ``node`` is the receiving node.
    """


@hookspec
def tmax_ingress_check(message: ReceivedMessage, friend: Friend, node: NodeAPI) -> Verdict | None:
    """Policy checks after the envelope is verified and decrypted.

    ``friend`` is the (possibly just-added) friend record of the sender, with
    its granted scopes. Return a :class:`Verdict` to reject (any rejection
    wins); ``None`` to accept. ``node`` is the receiving node.
    """


@hookspec
def tmax_register_delivery_sinks(register: Callable[[DeliverySink], None], node: NodeAPI) -> None:
    """Register delivery sinks: where accepted messages land.

    A sink has a unique ``name`` and an async ``deliver(message)`` that is
    durable when it returns and idempotent by ``message_id``. The node uses
    the sinks named in ``delivery.sinks``; naming one that is not registered
    is a start-up error.
    """


@hookspec
def tmax_register_invite_scopes(register: Callable[[InviteScope], None]) -> None:
    """Register invite scopes (name, description, optional payload validation).

    An invite may only grant, and a message may only use, registered scopes.
    """


@hookspec
def tmax_register_services(server: grpc.aio.Server, node: NodeAPI) -> None:
    """Add gRPC services to the node's local API server (the Unix socket).

    ``server`` is a ``grpc.aio.Server`` that has not started yet; call the
    generated ``add_*Servicer_to_server(servicer, server)``.
    """


@hookspec
def tmax_register_commands(cli: CommandRegistry) -> None:
    """Add subcommands to the ``tmax-mesh`` CLI.

    ``cli`` is a :class:`tmax_core.cli.CommandRegistry`; call
    ``cli.add(name, help, configure, run)`` where ``configure(parser)`` adds
    arguments to an argparse parser and ``run(args, ctx)`` returns the object
    to print (or raises :class:`tmax_core.errors.MeshError`).
    """


@hookspec
def tmax_node_started(node: NodeAPI) -> None:
    """The node has started: the peer listener is bound and transports and the
    outbox are running. The local API socket is not bound yet (it is bound,
    after ``tmax_register_services``, once every ``tmax_node_started`` returned)."""


@hookspec
def tmax_node_stopping(node: NodeAPI) -> None:
    """The node is about to stop (SIGTERM/SIGINT or shutdown).

    The local API socket is already closed; the peer listener, transports and
    outbox still run until every ``tmax_node_stopping`` returned."""
