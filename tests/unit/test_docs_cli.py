"""The reference docs name every command, host flag, environment variable and
dependency the code has (issue 14: docs match the code)."""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmax_core import cli
from tmax_core.plugin.manager import create_plugin_manager, failed_plugins
from tmax_mesh_relay import host

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CODE = [ROOT / "tmax_core", *sorted((ROOT / "plugins").glob("*/tmax_mesh_*"))]


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name)
                yield from _subcommands(child, (*path, name))


def _mesh_commands() -> list[tuple[str, ...]]:
    """Every ``tmax-mesh`` command path, from the real parser with every bundled plugin."""
    pm = create_plugin_manager(env={})
    assert not failed_plugins(pm), failed_plugins(pm)
    registry = cli.CommandRegistry()
    cli.register_builtin_commands(registry)
    pm.hook.tmax_register_commands(cli=registry)
    return sorted(_subcommands(cli.build_parser(registry)))


def _documented(path: tuple[str, ...], text: str) -> bool:
    r"""A code span that starts with the command (``tmax-mesh`` optional) and
    names the last word directly or as one of ``|`` alternatives (``\|`` in
    tables): `friends block\|unblock FRIEND` documents ``friends unblock``."""
    *parents, last = (re.escape(word) for word in path)
    head = "".join(f"{p} " for p in parents)
    pattern = rf"`(?:tmax-mesh )?{head}(?:[^`|]*\|\s*)*{last}(?=[\s`\\|\]])"
    return re.search(pattern, text) is not None


def test_the_command_walk_sees_plugin_commands() -> None:
    paths = _mesh_commands()
    assert ("host", "run") in paths and ("inbox", "delete") in paths and ("plugins",) in paths


@pytest.mark.parametrize("path", _mesh_commands(), ids=" ".join)
def test_every_command_is_in_cli_md(path: tuple[str, ...]) -> None:
    assert _documented(path, (DOCS / "cli.md").read_text()), (
        f"docs/cli.md does not document `{' '.join(path)}`"
    )


def test_the_command_check_can_fail() -> None:
    assert _documented(("friends", "unblock"), r"| `friends block\|unblock FRIEND` |")
    assert _documented(("config", "unset"), r"`config path\|get KEY\|unset KEY`")
    assert not _documented(("inbox", "unread"), "`inbox list [--unread]`")
    assert not _documented(("config", "set"), "`config show` and `set`")


@pytest.mark.parametrize(
    "flag",
    sorted(
        s
        for action in host.build_parser()._actions
        for s in action.option_strings
        if s.startswith("--") and s != "--help"
    ),
)
def test_every_host_flag_is_in_relay_md(flag: str) -> None:
    assert re.search(rf"{flag}(?![\w-])", (DOCS / "relay.md").read_text()), (
        f"docs/relay.md does not mention {flag}"
    )


def _env_vars_in_code() -> set[str]:
    """Every complete ``TMAX_*`` name in the code (prefixes like ``TMAX_HOST_`` left out)."""
    names: set[str] = set()
    for root in CODE:
        for path in root.rglob("*.py"):
            if "proto" not in path.relative_to(root).parts:
                names.update(re.findall(r"\bTMAX_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    return names


def test_the_env_scan_finds_known_variables() -> None:
    assert {"TMAX_LOG_LEVEL", "TMAX_RECOVERY_KEY_FILE", "TMAX_MESH_DISABLE_PLUGINS"} <= _env_vars_in_code()


@pytest.mark.parametrize("name", sorted(_env_vars_in_code()))
def test_every_environment_variable_is_documented(name: str) -> None:
    docs = "".join(p.read_text() for p in sorted(DOCS.glob("*.md")))
    assert re.search(rf"\b{name}\b", docs), f"no page in docs/ mentions {name}"


def _dependencies() -> set[str]:
    """Runtime dependencies of the five distributions, other than themselves."""
    names: set[str] = set()
    for pyproject in [ROOT / "pyproject.toml", *sorted((ROOT / "plugins").glob("*/pyproject.toml"))]:
        for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
            names.add(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower())
    return {n for n in names if not n.startswith("tmax-mesh")}


@pytest.mark.parametrize("name", sorted(_dependencies()))
def test_every_dependency_is_in_install_md(name: str) -> None:
    assert f"`{name}`" in (DOCS / "install.md").read_text(), f"docs/install.md does not list `{name}`"
