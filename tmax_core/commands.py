"""The command registry of ``tmax-mesh``: what the CLI builds its parser from
and what plugins add to in ``tmax_register_commands``.

Kept apart from :mod:`tmax_core.cli` so that the hook specs can name
:class:`CommandRegistry` without importing the CLI (which imports the plugin
manager, which imports the specs).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from tmax_core.client import JsonNodeClient, node_socket
from tmax_core.statedir import resolve_state_dir


@dataclass
class Context:
    """What a command's ``run(args, ctx)`` gets: paths, the plugin manager, a client factory."""

    args: argparse.Namespace
    pm: pluggy.PluginManager
    parser: argparse.ArgumentParser | None = None  # the whole tree, plugin commands included
    _client: JsonNodeClient | None = field(default=None, repr=False)

    @property
    def state_dir(self) -> Path:
        return resolve_state_dir(self.args.state_dir)

    @property
    def socket(self) -> Path:
        return node_socket(self.args.state_dir, self.args.socket)

    def client(self) -> JsonNodeClient:
        if self._client is None:
            self._client = JsonNodeClient(self.socket)
        return self._client


@dataclass
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], Any]
    render: Callable[[Any], str] | None = None


class CommandRegistry:
    """Top-level commands; plugins call :meth:`add` from ``tmax_register_commands``."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace, Context], Any],
        render: Callable[[Any], str] | None = None,
    ) -> None:
        """Add ``tmax-mesh NAME``: ``configure`` adds arguments (sub-parsers allowed), ``run``
        returns what to print (JSON-serializable), ``render`` formats it for people."""
        if name in self.commands:
            raise ValueError(f"command {name!r} is already registered")
        self.commands[name] = Command(name, help, configure, run, render)
