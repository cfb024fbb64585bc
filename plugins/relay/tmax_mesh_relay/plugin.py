"""Hook implementations of the ``relay`` plugin: config keys, the ``relay``
transport, and ``tmax-mesh host run`` (an alias of ``tmax-host``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from tmax_core.plugin import hookimpl
from tmax_core.plugin.helpers import validate_duration

if TYPE_CHECKING:
    from tmax_core.model import Transport
    from tmax_core.plugin import NodeAPI
    from tmax_core.plugin.helpers import CommandRegistry, ConfigRegistry, Context


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    # The relay URLs themselves are the core key ``node.relays``.
    registry.add(
        "relay.reconnect_max",
        str,
        "30s",
        "longest delay between reconnection attempts to a relay host",
        validate=validate_duration,
    )
    registry.add(
        "relay.ca_file",
        str,
        "",
        "PEM file of CA certificates trusted for grpcs:// relay hosts ('' = the system's roots)",
    )


@hookimpl
def tmax_register_transports(register: Callable[[Transport], None], node: NodeAPI) -> None:
    from tmax_mesh_relay.transport import RelayTransport

    register(RelayTransport(node))


def _configure_host(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    # '+' as the only prefix: every argument after `run`, flags included, is
    # left for tmax-host's own parser (tmax-mesh host run --help shows its help).
    run = sub.add_parser(
        "run", help="run a relay host; takes tmax-host's flags", prefix_chars="+", add_help=False
    )
    run.add_argument("host_args", nargs=argparse.REMAINDER)


def _run_host(args: argparse.Namespace, ctx: Context) -> None:
    from tmax_mesh_relay.host import main

    raise SystemExit(main(args.host_args))


@hookimpl
def tmax_register_commands(cli: CommandRegistry) -> None:
    cli.add("host", "run a relay host (same as tmax-host)", _configure_host, _run_host)
