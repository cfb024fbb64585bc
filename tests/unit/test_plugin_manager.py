"""Plugin manager: entry-point loading, disabling, broken plugins, listing."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tmax_core.plugin import hookimpl
from tmax_core.plugin.manager import (
    CORE_NAME,
    DISABLE_ENV,
    TmaxPluginManager,
    create_plugin_manager,
    failed_plugins,
    list_plugins,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BUNDLED = {
    "relay": "tmax-mesh-relay",
    "direct": "tmax-mesh-direct",
    "session_mailbox": "tmax-mesh-session-mailbox",
    "ratelimit": "tmax-mesh-ratelimit",
}


def _fake_dist(site: Path, dist: str, entry_points: dict[str, str], version: str = "0.1") -> None:
    """Make ``dist`` visible to importlib.metadata without pip: a bare dist-info."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[tmax_mesh]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway site dir on sys.path (plus the broken fixture's source dir)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(FIXTURES / "broken_plugin"))
    for mod in [m for m in sys.modules if m.startswith("tmax_mesh_broken_fixture") or m.startswith("tfx_")]:
        monkeypatch.delitem(sys.modules, mod)
    return site


def test_bundled_plugins_load_with_versions_and_hooks(clean_env: None) -> None:
    pm = create_plugin_manager()
    assert isinstance(pm, TmaxPluginManager)
    rows = {row["name"]: row for row in list_plugins(pm)}
    assert list_plugins(pm)[0]["name"] == CORE_NAME
    assert rows[CORE_NAME]["distribution"] == "tmax-mesh"
    assert "tmax_register_invite_scopes" in rows[CORE_NAME]["hooks"]
    for name, dist in BUNDLED.items():
        assert name in rows, f"plugin {name} not loaded: {failed_plugins(pm)}"
        assert rows[name]["distribution"] == dist
        assert rows[name]["version"] == rows[CORE_NAME]["version"]  # released in lockstep
        assert "tmax_add_config" in rows[name]["hooks"]
        assert rows[name]["hooks"] == sorted(rows[name]["hooks"])
    assert failed_plugins(pm) == []


def test_factory_gives_independent_managers(clean_env: None) -> None:
    a = create_plugin_manager(load_entrypoints=False)
    b = create_plugin_manager(load_entrypoints=False)
    assert a is not b
    assert [r["name"] for r in list_plugins(a)] == [CORE_NAME]

    class Extra:
        @hookimpl
        def tmax_node_started(self, node: object) -> None:
            pass

    a.register(Extra(), name="extra")
    assert [r["name"] for r in list_plugins(b)] == [CORE_NAME]
    extra = next(r for r in list_plugins(a) if r["name"] == "extra")
    assert extra == {"name": "extra", "version": None, "distribution": None, "hooks": ["tmax_node_started"]}


def test_env_disables_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, " relay , direct,")
    pm = create_plugin_manager()
    names = {r["name"] for r in list_plugins(pm)}
    assert "relay" not in names and "direct" not in names
    assert {"ratelimit", "session_mailbox", CORE_NAME} <= names
    assert pm.is_blocked("relay")
    assert failed_plugins(pm) == []


def test_disabled_argument_and_core_not_disableable(clean_env: None) -> None:
    pm = create_plugin_manager(disabled=["ratelimit", "core"])
    names = {r["name"] for r in list_plugins(pm)}
    assert "ratelimit" not in names
    assert CORE_NAME in names


def test_broken_plugin_is_reported_and_others_load(
    clean_env: None, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_dist(site, "tmax-mesh-broken-fixture", {"broken": "tmax_mesh_broken_fixture"})
    with caplog.at_level(logging.WARNING, logger="tmax_mesh.plugins"):
        pm = create_plugin_manager()
    failed = failed_plugins(pm)
    assert [f["name"] for f in failed] == ["broken"]
    assert failed[0]["distribution"] == "tmax-mesh-broken-fixture"
    assert "RuntimeError" in failed[0]["error"] and "exploded" in failed[0]["error"]
    assert "\n" not in failed[0]["error"]
    names = {r["name"] for r in list_plugins(pm)}
    assert set(BUNDLED) | {CORE_NAME} <= names
    assert "broken" not in names
    warnings = [r for r in caplog.records if r.name == "tmax_mesh.plugins"]
    assert len(warnings) == 1 and "broken" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


def test_disabled_broken_plugin_is_never_imported(monkeypatch: pytest.MonkeyPatch, site: Path) -> None:
    _fake_dist(site, "tmax-mesh-broken-fixture", {"broken": "tmax_mesh_broken_fixture"})
    monkeypatch.setenv(DISABLE_ENV, "broken")
    pm = create_plugin_manager()
    assert failed_plugins(pm) == []
    assert "tmax_mesh_broken_fixture" not in sys.modules


def test_other_failure_kinds(clean_env: None, site: Path) -> None:
    # Bad hook argument name (pluggy validation), missing attribute, a non-object,
    # and a name clash with a bundled plugin.
    (site / "tfx_badargs.py").write_text(
        "from tmax_core.plugin import hookimpl\n"
        "@hookimpl\n"
        "def tmax_node_started(node, nonexistent_arg):\n"
        "    pass\n"
    )
    (site / "tfx_none.py").write_text("VALUE = None\n")
    (site / "tfx_dup.py").write_text("x = 1\n")
    (site / "tfx_good.py").write_text(
        "from tmax_core.plugin import hookimpl\n@hookimpl\ndef tmax_node_stopping(node):\n    pass\n"
    )
    _fake_dist(
        site,
        "tfx-plugins",
        {
            "badargs": "tfx_badargs",
            "missing": "tfx_none:does_not_exist",
            "none": "tfx_none:VALUE",
            "dupname": "tfx_dup",
            "good": "tfx_good",
        },
        version="2.3",
    )
    (site / "tfx_dup2.py").write_text("y = 2\n")
    _fake_dist(site, "tfx-other", {"dupname": "tfx_dup2"})
    pm = create_plugin_manager()
    errors = {f["name"]: f["error"] for f in failed_plugins(pm)}
    assert set(errors) == {"badargs", "missing", "none", "dupname"}
    assert "already" in errors["dupname"]
    assert "nonexistent_arg" in errors["badargs"]
    assert all(len(e) <= 300 for e in errors.values())
    assert "AttributeError" in errors["missing"]
    assert "not a module or object" in errors["none"]
    rows = {r["name"]: r for r in list_plugins(pm)}
    assert rows["good"] == {
        "name": "good",
        "version": "2.3",
        "distribution": "tfx-plugins",
        "hooks": ["tmax_node_stopping"],
    }
    assert rows["dupname"]["distribution"] in {"tfx-plugins", "tfx-other"}
    assert set(BUNDLED) <= set(rows)
    assert "badargs" not in rows and not pm.has_plugin("badargs")


def test_misspelled_hook_marks_the_plugin_failed(clean_env: None, site: Path) -> None:
    """A hookimpl no hookspec names would be silently ignored: the plugin is
    reported failed with one line naming it; an optionalhook is allowed."""
    (site / "tfx_typo.py").write_text(
        "from tmax_core.plugin import hookimpl\n"
        "@hookimpl\n"
        "def tmax_node_stopping(node):\n    pass\n"
        "@hookimpl\n"
        "def tmax_node_stoped(node):\n    pass\n"
    )
    (site / "tfx_optional.py").write_text(
        "from tmax_core.plugin import hookimpl\n"
        "@hookimpl(optionalhook=True)\n"
        "def tmax_future_hook(node):\n    pass\n"
    )
    _fake_dist(site, "tfx-typo", {"typo": "tfx_typo", "optional": "tfx_optional"})
    pm = create_plugin_manager()
    errors = {f["name"]: f["error"] for f in failed_plugins(pm)}
    assert set(errors) == {"typo"}
    assert "tmax_node_stoped" in errors["typo"] and "no such hook" in errors["typo"]
    assert not pm.has_plugin("typo") and pm.has_plugin("optional")


def test_no_entrypoints(clean_env: None, site: Path) -> None:
    _fake_dist(site, "tmax-mesh-broken-fixture", {"broken": "tmax_mesh_broken_fixture"})
    pm = create_plugin_manager(load_entrypoints=False)
    assert [r["name"] for r in list_plugins(pm)] == [CORE_NAME]
    assert failed_plugins(pm) == []
