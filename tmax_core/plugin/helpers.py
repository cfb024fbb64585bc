"""The core helpers plugins may import: one public module, stable across
releases, whatever core module each helper lives in today.

Domain types are in :mod:`tmax_core.model`, errors in :mod:`tmax_core.errors`,
the hook marker and :class:`~tmax_core.plugin.NodeAPI` in
:mod:`tmax_core.plugin`; everything else a plugin needs of the core is here.

Each name is loaded on first use (PEP 562), from its own core module only: a
plugin that takes ``TokenBucket`` does not load the node, the CLI and the SDK
with it (every ``tmax-mesh`` command loads every plugin).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tmax_core.aliases import alias_key
    from tmax_core.api import translate_errors
    from tmax_core.builtins import DEFAULT_MAX_BYTES_PER_FRIEND, DEFAULT_MAX_BYTES_TOTAL
    from tmax_core.cli import fmt_time, non_negative_int, read_body
    from tmax_core.client import body_for_json
    from tmax_core.clock import now_ms
    from tmax_core.commands import CommandRegistry, Context
    from tmax_core.config import (
        Config,
        ConfigRegistry,
        is_wildcard_host,
        read_toml,
        validate_duration,
        validate_endpoints,
        validate_host_port,
        validate_positive,
    )
    from tmax_core.crypto import looks_like_node_id, parse_hex_id, parse_node_id, to_checksum
    from tmax_core.durations import parse_duration_ms
    from tmax_core.logs import add_logging_arguments, setup_logging
    from tmax_core.metricsserver import MetricsServer
    from tmax_core.netaddr import source_key
    from tmax_core.plugin.nodeapi import PluginStates
    from tmax_core.readyfile import remove_ready_file, write_ready_file
    from tmax_core.sdnotify import NOTIFY_SOCKET_ENV, notify

    # A plugin's own SQLite database, opened and migrated like the core's, with
    # quotas counted the way the core inbox counts (the storage helpers all come
    # from here, so a move in the core is one edit).
    from tmax_core.sqlitedb import (
        Database,
        Migration,
        keep_rowid_counter,
        lastrowid_if_new,
        open_database,
        write_transaction,
    )
    from tmax_core.store import Quota, UsageTable, message_charge
    from tmax_core.tokenbucket import TokenBucket

_WHERE = {
    "add_logging_arguments": "tmax_core.logs",
    "alias_key": "tmax_core.aliases",
    "body_for_json": "tmax_core.client",
    "CommandRegistry": "tmax_core.commands",
    "Config": "tmax_core.config",
    "ConfigRegistry": "tmax_core.config",
    "Context": "tmax_core.commands",
    "Database": "tmax_core.sqlitedb",
    "DEFAULT_MAX_BYTES_PER_FRIEND": "tmax_core.builtins",
    "DEFAULT_MAX_BYTES_TOTAL": "tmax_core.builtins",
    "fmt_time": "tmax_core.cli",
    "is_wildcard_host": "tmax_core.config",
    "keep_rowid_counter": "tmax_core.sqlitedb",
    "lastrowid_if_new": "tmax_core.sqlitedb",
    "looks_like_node_id": "tmax_core.crypto",
    "message_charge": "tmax_core.store",
    "MetricsServer": "tmax_core.metricsserver",
    "Migration": "tmax_core.sqlitedb",
    "non_negative_int": "tmax_core.cli",
    "notify": "tmax_core.sdnotify",
    "NOTIFY_SOCKET_ENV": "tmax_core.sdnotify",
    "now_ms": "tmax_core.clock",
    "open_database": "tmax_core.sqlitedb",
    "parse_duration_ms": "tmax_core.durations",
    "parse_hex_id": "tmax_core.crypto",
    "parse_node_id": "tmax_core.crypto",
    "PluginStates": "tmax_core.plugin.nodeapi",
    "Quota": "tmax_core.store",
    "read_body": "tmax_core.cli",
    "read_toml": "tmax_core.config",
    "remove_ready_file": "tmax_core.readyfile",
    "setup_logging": "tmax_core.logs",
    "source_key": "tmax_core.netaddr",
    "to_checksum": "tmax_core.crypto",
    "TokenBucket": "tmax_core.tokenbucket",
    "translate_errors": "tmax_core.api",
    "UsageTable": "tmax_core.store",
    "validate_duration": "tmax_core.config",
    "validate_endpoints": "tmax_core.config",
    "validate_host_port": "tmax_core.config",
    "validate_positive": "tmax_core.config",
    "write_ready_file": "tmax_core.readyfile",
    "write_transaction": "tmax_core.sqlitedb",
}
"""Each helper's home in the core (moving one is an edit here, not in plugins)."""

__all__ = [
    "DEFAULT_MAX_BYTES_PER_FRIEND",
    "DEFAULT_MAX_BYTES_TOTAL",
    "NOTIFY_SOCKET_ENV",
    "CommandRegistry",
    "Config",
    "ConfigRegistry",
    "Context",
    "Database",
    "MetricsServer",
    "Migration",
    "PluginStates",
    "Quota",
    "TokenBucket",
    "UsageTable",
    "add_logging_arguments",
    "alias_key",
    "body_for_json",
    "fmt_time",
    "is_wildcard_host",
    "keep_rowid_counter",
    "lastrowid_if_new",
    "looks_like_node_id",
    "message_charge",
    "non_negative_int",
    "notify",
    "now_ms",
    "open_database",
    "parse_duration_ms",
    "parse_hex_id",
    "parse_node_id",
    "read_body",
    "read_toml",
    "remove_ready_file",
    "setup_logging",
    "source_key",
    "to_checksum",
    "translate_errors",
    "validate_duration",
    "validate_endpoints",
    "validate_host_port",
    "validate_positive",
    "write_ready_file",
    "write_transaction",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
