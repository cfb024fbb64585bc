"""Every hook and every config key is documented (datasette-style)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tmax_core.config import build_registry
from tmax_core.plugin import PROJECT, spec
from tmax_core.plugin.manager import create_plugin_manager, failed_plugins

DOCS = Path(__file__).resolve().parents[2] / "docs"


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
    assert hook in _headings((DOCS / "plugins.md").read_text()), (
        f"docs/plugins.md has no '### {hook}' section in its Hook reference"
    )


def test_no_stale_hook_docs() -> None:
    documented = {h for h in _headings((DOCS / "plugins.md").read_text()) if h.startswith("tmax_")}
    assert documented <= set(_hookspec_names())


def test_every_config_key_is_documented() -> None:
    pm = create_plugin_manager(env={})
    assert failed_plugins(pm) == []
    registry = build_registry(pm)
    text = (DOCS / "config.md").read_text()
    missing = [k for k in registry.names() if f"`{k}`" not in text]
    assert not missing, f"docs/config.md does not document: {missing}"
    for plugin in ["relay", "direct", "session_mailbox", "ratelimit"]:
        assert any(k.startswith(plugin + ".") for k in registry.names()), plugin
