"""Every hook (with its arguments), every NodeAPI member, every plugin helper
and every config key is documented (datasette-style)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from tmax_core.config import build_registry
from tmax_core.plugin import PROJECT, NodeAPI, helpers, spec
from tmax_core.plugin.manager import create_plugin_manager, failed_plugins

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLUGINS_MD = (DOCS / "plugins.md").read_text()


def _hookspec_names() -> list[str]:
    marker = f"{PROJECT}_spec"
    return sorted(
        name for name in dir(spec) if name.startswith("tmax_") and hasattr(getattr(spec, name), marker)
    )


def _headings(text: str) -> set[str]:
    return set(re.findall(r"^### (\S+)\s*$", text, flags=re.MULTILINE))


def test_spec_has_hooks_with_docstrings() -> None:
    names = _hookspec_names()
    assert "tmax_add_config" in names and len(names) >= 10
    for name in names:
        assert (getattr(spec, name).__doc__ or "").strip(), f"hookspec {name} has no docstring"


@pytest.mark.parametrize("hook", _hookspec_names())
def test_hook_is_documented(hook: str) -> None:
    assert hook in _headings(PLUGINS_MD), f"docs/plugins.md has no '### {hook}' section in its Hook reference"


def test_no_stale_hook_docs() -> None:
    documented = {h for h in _headings(PLUGINS_MD) if h.startswith("tmax_")}
    assert documented <= set(_hookspec_names())


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of any level."""
    match = re.search(rf"^{re.escape(heading)}\s*$(.*?)(?=^#)", text + "\n#", flags=re.MULTILINE | re.DOTALL)
    assert match, f"docs/plugins.md has no {heading!r} section"
    return match.group(1)


def _documented_arguments(hook: str) -> list[str]:
    """The parameters of the ``def`` in the first python block of the hook's section."""
    block = re.search(r"```python\n(.*?)```", _section(PLUGINS_MD, f"### {hook}"), flags=re.DOTALL)
    assert block, f"docs/plugins.md: the {hook} section has no python signature block"
    signature = block.group(1).replace("@hookimpl\n", "").strip()
    (func,) = ast.parse(signature + ": ...").body
    assert isinstance(func, ast.FunctionDef) and func.name == hook, signature
    return [a.arg for a in func.args.args]


@pytest.mark.parametrize("hook", _hookspec_names())
def test_hook_arguments_are_documented(hook: str) -> None:
    """The documented signature names exactly the hookspec's arguments, in order."""
    arguments = list(inspect.signature(getattr(spec, hook)).parameters)
    assert _documented_arguments(hook) == arguments, f"docs/plugins.md: the signature of {hook}"


def _node_api_members() -> set[str]:
    names = set(NodeAPI.__annotations__) | {n for n in vars(NodeAPI) if not n.startswith("_")}
    return {n for n in names if n not in vars(object)}


def test_every_node_api_member_is_documented() -> None:
    """The table under "The node (`NodeAPI`)" lists every member, and nothing else."""
    table = _section(PLUGINS_MD, "## The node (`NodeAPI`)")
    documented = set(re.findall(r"^\| `(\w+)", table, flags=re.MULTILINE))
    members = _node_api_members()
    assert len(members) >= 10
    assert documented == members, (
        f"undocumented: {sorted(members - documented)}; not members: {sorted(documented - members)}"
    )


def test_every_helper_is_documented() -> None:
    """The "Helpers" section names everything tmax_core.plugin.helpers exports."""
    section = _section(PLUGINS_MD, "### Helpers (`tmax_core.plugin.helpers`)")
    missing = [name for name in helpers.__all__ if f"`{name}`" not in section]
    assert not missing, f"docs/plugins.md does not list the helpers {missing}"


def test_every_config_key_is_documented() -> None:
    pm = create_plugin_manager(env={})
    assert failed_plugins(pm) == []
    registry = build_registry(pm)
    text = (DOCS / "config.md").read_text()
    missing = [k for k in registry.names() if f"`{k}`" not in text]
    assert not missing, f"docs/config.md does not document: {missing}"
    for plugin in ["relay", "direct", "session_mailbox", "ratelimit"]:
        assert any(k.startswith(plugin + ".") for k in registry.names()), plugin
