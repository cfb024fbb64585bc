"""The core helpers plugins may import: one public module, stable across
releases, whatever core module each helper lives in today.

Domain types are in :mod:`tmax_core.model`, errors in :mod:`tmax_core.errors`,
the hook marker and :class:`~tmax_core.plugin.NodeAPI` in
:mod:`tmax_core.plugin`; everything else a plugin needs of the core is here.
"""

from __future__ import annotations

from tmax_core.aliases import alias_key
from tmax_core.api import translate_errors
from tmax_core.builtins import DEFAULT_MAX_BYTES_PER_FRIEND, DEFAULT_MAX_BYTES_TOTAL
from tmax_core.cli import fmt_time, non_negative_int, read_body
from tmax_core.client import body_for_json
from tmax_core.commands import CommandRegistry, Context
from tmax_core.config import (
    Config,
    ConfigRegistry,
    is_wildcard_host,
    validate_duration,
    validate_endpoints,
    validate_host_port,
    validate_positive,
)
from tmax_core.crypto import looks_like_node_id, now_ms, parse_hex_id, parse_node_id, to_checksum
from tmax_core.durations import parse_duration_ms
from tmax_core.logs import add_logging_arguments, setup_logging
from tmax_core.netaddr import source_key
from tmax_core.plugin.nodeapi import PluginStates
from tmax_core.readyfile import remove_ready_file, write_ready_file

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

__all__ = [
    "DEFAULT_MAX_BYTES_PER_FRIEND",
    "DEFAULT_MAX_BYTES_TOTAL",
    "CommandRegistry",
    "Config",
    "ConfigRegistry",
    "Context",
    "Database",
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
    "now_ms",
    "open_database",
    "parse_duration_ms",
    "parse_hex_id",
    "parse_node_id",
    "read_body",
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
