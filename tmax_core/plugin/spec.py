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

``node`` arguments are the running :class:`tmax_core.node.Node`; plugins use
its public attributes (``identity``, ``config``, ``store``, ``state_dir``,
``handle_envelope``, ``friends``) and nothing whose name starts with ``_``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tmax_core.plugin import hookspec

if TYPE_CHECKING:
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


@hookspec(historic=True)
def tmax_add_config(registry: ConfigRegistry) -> None:
    """Declare configuration keys with ``registry.add(key, type, default, help)``.

    Historic: plugins registered after the call still receive it. Keys are
    namespaced by convention with the plugin's name (``relay.hosts``).
    """


@hookspec
def tmax_register_transports(register: Callable[[Transport], None], node: Any) -> None:
    """Register transports that carry envelopes to friends.

    Call ``register(transport)`` once per transport. A transport has a unique
    ``name`` (``direct``, ``relay``), a ``cost`` (lower is preferred when no
    plugin reorders candidates), async ``start``/``stop``/``send`` and a
    synchronous ``status()`` dict shown by ``tmax-mesh node status``. Inbound
    envelopes are handed to ``node.handle_envelope(data, source)``.
    """


@hookspec(firstresult=True)
def tmax_select_transport(friend: Friend, candidates: list[Transport]) -> list[Transport] | None:
    """Order the transports to try for one send to ``friend``.

    ``candidates`` are the registered transports that say they can reach the
    friend, sorted by cost. Return a reordered (or filtered) list, or ``None``
    to leave the decision to the next implementation. The first non-``None``
    answer wins; the default keeps the cost order.
    """


@hookspec
def tmax_ingress_precheck(meta: IngressMeta, source: IngressSource) -> Verdict | None:
    """Cheap checks run **before any cryptography** on an inbound envelope.

    ``meta`` holds the unauthenticated header facts (claimed sender, size,
    the stored friend of that claimed id, and for a stranger the invite token
    id it names). ``source`` is what the transport observed. Return a
    :class:`Verdict` to reject (any rejection wins); ``None`` to let it pass.
    Must not block: it runs once per inbound envelope from a friend or from a
    stranger naming an active invite (the core turns other strangers away
    first), including floods of forged ones.
    """


@hookspec
def tmax_ingress_check(message: ReceivedMessage, friend: Friend) -> Verdict | None:
    """Policy checks after the envelope is verified and decrypted.

    ``friend`` is the (possibly just-added) friend record of the sender, with
    its granted scopes. Return a :class:`Verdict` to reject (any rejection
    wins); ``None`` to accept.
    """


@hookspec
def tmax_register_delivery_sinks(register: Callable[[DeliverySink], None], node: Any) -> None:
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
def tmax_register_services(server: Any, node: Any) -> None:
    """Add gRPC services to the node's local API server (the Unix socket).

    ``server`` is a ``grpc.aio.Server`` that has not started yet; call the
    generated ``add_*Servicer_to_server(servicer, server)``.
    """


@hookspec
def tmax_register_commands(cli: Any) -> None:
    """Add subcommands to the ``tmax-mesh`` CLI.

    ``cli`` is a :class:`tmax_core.cli.CommandRegistry`; call
    ``cli.add(name, help, configure, run)`` where ``configure(parser)`` adds
    arguments to an argparse parser and ``run(args, ctx)`` returns the object
    to print (or raises :class:`tmax_core.errors.MeshError`).
    """


@hookspec
def tmax_node_started(node: Any) -> None:
    """The node has started: listeners are bound and transports are running."""


@hookspec
def tmax_node_stopping(node: Any) -> None:
    """The node is about to stop (SIGTERM/SIGINT or shutdown); still fully usable."""
