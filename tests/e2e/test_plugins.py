"""A broken third-party plugin is reported and skipped: the real node still starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.harness import ProcGroup

FIXTURE_SRC = Path(__file__).resolve().parent.parent / "fixtures" / "broken_plugin"


def _site_with_broken_plugin(site: Path) -> dict[str, str]:
    """A dist-info advertising the broken fixture's entry point, visible via PYTHONPATH."""
    info = site / "tmax_mesh_broken_fixture-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmax-mesh-broken-fixture\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tmax_mesh]\nbroken = tmax_mesh_broken_fixture\n")
    path = os.pathsep.join(p for p in (str(site), str(FIXTURE_SRC), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}


def test_broken_plugin_is_reported_and_node_still_starts(procs: ProcGroup, tmp_path: Path) -> None:
    env = _site_with_broken_plugin(tmp_path / "site")
    node = procs.node("a", env=env)  # waits on the ready file: the daemon came up
    assert node.alive()
    assert "broken" in node.log() and "exploded on import" in node.log()

    res = node.run("plugins", "--json")
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    loaded = {name for name, p in plugins.items() if p["error"] is None}
    assert {"core", "relay", "direct", "session_mailbox", "ratelimit"} <= loaded
    broken = plugins["broken"]
    assert broken["hooks"] == [] and "exploded on import" in broken["error"], broken
    assert broken["distribution"] == "tmax-mesh-broken-fixture"
    assert b"plugin broken failed to load" in res.stderr
    text = node.run("plugins")
    assert text.returncode == 0 and b"FAILED: " in text.stdout and b"exploded on import" in text.stdout
    assert node.cli("node", "info")["node_id"] == node.node_id


def test_config_of_a_disabled_or_broken_plugin_does_not_stop_the_node(
    procs: ProcGroup, tmp_path: Path
) -> None:
    """Set a plugin's key, then run without that plugin (disabled, or failing
    to load): the node starts and says the key is ignored. A key no plugin
    could own is still refused."""
    node = procs.node("a", start=False)
    assert node.cli("config", "set", "direct.probe_interval", "30s")["value"] == "30s"
    config = node.state_dir / "config.toml"
    config.write_text(config.read_text() + "\n[broken]\nsetting = 1\n")
    node.env = {**_site_with_broken_plugin(tmp_path / "site"), "TMAX_MESH_DISABLE_PLUGINS": "direct"}
    node.start()
    assert node.alive()
    log = node.log()
    assert "'direct.probe_interval' ignored: plugin 'direct' is not loaded (disabled)" in log, log
    assert "'broken.setting' ignored: plugin 'broken' is not loaded (failed to load)" in log, log
    assert log.count("ignored: plugin") == 2, log
    node.stop()
    config.write_text(config.read_text() + "\n[nosuchplugin]\nsetting = 1\n")
    res = node.run("config", "show")
    assert res.returncode != 0 and b"unknown config key 'nosuchplugin.setting'" in res.stderr, res


def test_a_mistyped_config_key_is_refused_with_a_suggestion(procs: ProcGroup) -> None:
    node = procs.node("a", start=False)
    res = node.run("config", "set", "node.peer_listn", "127.0.0.1:0")
    assert res.returncode == 1
    assert res.stderr.decode().strip() == (
        "tmax-mesh: error: unknown config key 'node.peer_listn' (did you mean 'node.peer_listen'?)"
    )
    assert not (node.state_dir / "config.toml").exists()
