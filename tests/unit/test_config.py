"""Config registry, TOML file, env/CLI precedence, atomic editing, paths."""

from __future__ import annotations

import logging
import os
import pwd
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tmax_core.config import (
    Config,
    ConfigRegistry,
    build_registry,
    config_path,
    env_var_for,
    set_value,
    unset_value,
    validate_duration,
)
from tmax_core.errors import ConfigError, StateDirError
from tmax_core.plugin.manager import PluginFailure, create_plugin_manager
from tmax_core.statedir import ensure_state_dir, resolve_state_dir, socket_path


@pytest.fixture(scope="module")
def registry() -> ConfigRegistry:
    return build_registry(create_plugin_manager(env={}))


@pytest.fixture
def small() -> ConfigRegistry:
    reg = ConfigRegistry()
    reg.add("a.text", str, "x", "a string")
    reg.add("a.count", int, 3, "an int")
    reg.add("a.ratio", float, 0.5, "a float")
    reg.add("a.flag", bool, False, "a bool")
    reg.add("a.items", list, ["one"], "a list")
    reg.add("b.mode", str, "fast", "a choice", choices=["fast", "slow"])
    reg.add("b.wait", str, "1s", "a duration", validate=validate_duration)
    reg.add("b.c.deep-key", int, 0, "a nested key")
    return reg


# ------------------------------------------------------------------ registry


def test_core_and_plugin_keys_declared(registry: ConfigRegistry) -> None:
    for key in [
        "node.peer_listen",
        "node.relays",
        "messages.max_bytes",
        "delivery.sinks",
        "ratelimit.rate",
        "relay.reconnect_max",
        "direct.dial_timeout",
        "session_mailbox.session",
    ]:
        assert key in registry
    assert registry.get("messages.max_bytes").default == 1048576
    assert registry.get("delivery.sinks").default == ["inbox"]
    assert registry.get("ratelimit.source_rate").default == 50.0


def test_registry_rejects_bad_declarations(small: ConfigRegistry) -> None:
    with pytest.raises(ConfigError, match="declared twice"):
        small.add("a.text", str, "", "dup")
    with pytest.raises(ConfigError, match="invalid config key name"):
        small.add("NoDots", str, "", "bad")
    with pytest.raises(ConfigError, match="unsupported type"):
        small.add("a.dict", dict, {}, "bad")
    with pytest.raises(ConfigError, match="bad default"):
        small.add("a.num", int, "3", "bad")
    with pytest.raises(ConfigError, match="clashes"):
        small.add("a.text-x", str, "", "ok")
        small.add("a.text_x", str, "", "clash")
    with pytest.raises(ConfigError, match="clashes"):
        small.add("disable.plugins", str, "", "reserved env name")
    assert "a.num" not in small


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("a.flag", "yes", True),
        ("a.flag", "0", False),
        ("a.flag", "TRUE", True),
        ("a.count", "42", 42),
        ("a.ratio", "2", 2.0),
        ("a.items", '["x", "y"]', ["x", "y"]),
        ("a.items", "x, y,,z", ["x", "y", "z"]),
        ("a.items", "", []),
        ("a.text", " keep spaces ", " keep spaces "),
        ("b.mode", "slow", "slow"),
        ("b.wait", "15m", "15m"),
    ],
)
def test_parse_value(small: ConfigRegistry, key: str, text: str, value: object) -> None:
    assert small.parse_value(key, text) == value


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("a.flag", "maybe"),
        ("a.count", "1.5"),
        ("a.ratio", "nan"),
        ("a.items", "[1, {}]"),
        ("a.items", "[unclosed"),
        ("b.mode", "medium"),
        ("b.wait", "soon"),
        ("no.such", "1"),
    ],
)
def test_parse_value_rejects(small: ConfigRegistry, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        small.parse_value(key, text)
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_duration_keys_are_validated(small: ConfigRegistry) -> None:
    for bad in ["", "abc", "-1s", "s"]:
        with pytest.raises(ConfigError):
            small.check("b.wait", bad)


def test_advertised_endpoints_are_validated(registry: ConfigRegistry) -> None:
    ok = ["0.0.0.0:7400", "203.0.113.7:7400", "[2001:db8::1]:7400", "relay.example.org:443"]
    assert registry.check("node.peer_advertise", ok) == ok
    assert registry.parse_value("node.peer_advertise", "0.0.0.0:7400,10.0.0.2:7401") == [
        "0.0.0.0:7400",
        "10.0.0.2:7401",
    ]
    for bad, needle in [
        (["7400"], "is not HOST:PORT"),
        ([":7400"], "is not HOST:PORT"),
        (["host:port"], "is not HOST:PORT"),
        (["host:70000"], "is not HOST:PORT"),
        (["host:0"], "port 0 cannot be dialled"),
        ([""], "is not HOST:PORT"),
        ([7400], "is not HOST:PORT"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            registry.check("node.peer_advertise", bad)


def test_env_var_names() -> None:
    assert env_var_for("node.peer_listen") == "TMAX_MESH_NODE_PEER_LISTEN"
    assert env_var_for("b.c.deep-key") == "TMAX_MESH_B_C_DEEP_KEY"


# ------------------------------------------------------------------ loading


def test_defaults_when_file_missing(small: ConfigRegistry, tmp_path: Path) -> None:
    cfg = Config.load(tmp_path / "missing.toml", small, env={})
    assert cfg.get("a.count") == 3
    assert cfg.source("a.count") == "default"
    assert cfg.as_dict()["a.items"] == ["one"]


def test_file_env_cli_precedence(small: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[a]\ncount = 7\ntext = "from-file"\n\n[b.c]\ndeep-key = 9\n')
    env = {"TMAX_MESH_A_TEXT": "from-env", "TMAX_MESH_A_FLAG": "on", "UNRELATED": "1"}
    cfg = Config.load(path, small, env=env)
    assert (cfg.get("a.count"), cfg.source("a.count")) == (7, "file")
    assert (cfg.get("a.text"), cfg.source("a.text")) == ("from-env", "env")
    assert (cfg.get("a.flag"), cfg.source("a.flag")) == (True, "env")
    assert (cfg.get("b.c.deep-key"), cfg.source("b.c.deep-key")) == (9, "file")
    assert cfg.source("a.ratio") == "default"
    cfg.override("a.text", "from-cli")
    cfg.override("a.count", "11")
    cfg.override("a.items", ["p", "q"])
    assert (cfg.get("a.text"), cfg.source("a.text")) == ("from-cli", "cli")
    assert cfg.get("a.count") == 11 and cfg.get("a.items") == ["p", "q"]
    with pytest.raises(ConfigError):
        cfg.override("a.count", "eleven")
    with pytest.raises(ConfigError):
        cfg.override("a.count", 1.5)
    assert cfg.get("a.count") == 11
    rows = {r["key"]: r for r in cfg.describe()}
    assert rows["a.text"]["source"] == "cli" and rows["a.text"]["default"] == "x"


def test_get_returns_copies_and_unknown_key_errors(small: ConfigRegistry, tmp_path: Path) -> None:
    cfg = Config.load(None, small, env={})
    cfg.get("a.items").append("mutated")
    assert cfg.get("a.items") == ["one"]
    assert cfg.get_duration_ms("b.wait") == 1000
    with pytest.raises(ConfigError, match=r"unknown config key 'nope\.key'"):
        cfg.get("nope.key")
    with pytest.raises(ConfigError):
        cfg.source("nope.key")


def test_bad_env_value_names_variable(small: ConfigRegistry) -> None:
    with pytest.raises(ConfigError, match="TMAX_MESH_A_COUNT"):
        Config.load(None, small, env={"TMAX_MESH_A_COUNT": "lots"})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[a]\nunknown = 1\n", "a.unknown"),
        ("[zzz]\nx = 1\n", "zzz.x"),
        ("a = 1\n", "'a'"),
        ('[a]\ncount = "7"\n', "a.count"),
        ("[a]\nflag = 1\n", "a.flag"),
        ('[b]\nmode = "medium"\n', "b.mode"),
        ("[a]\nitems = [{x = 1}]\n", "a.items"),
    ],
)
def test_file_errors_name_key_and_file(small: ConfigRegistry, tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        Config.load(path, small, env={})
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_bad_toml_reports_file_and_line(small: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[a]\ncount = 1\ntext = "unterminated\n')
    with pytest.raises(ConfigError) as err:
        Config.load(path, small, env={})
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg


def test_float_key_accepts_int_in_file(small: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[a]\nratio = 2\n")
    cfg = Config.load(path, small, env={})
    assert cfg.get("a.ratio") == 2.0 and isinstance(cfg.get("a.ratio"), float)


def test_unknown_keys_suggest_the_closest_declared_key(small: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[a]\ncuont = 7\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'a\.cuont' \(did you mean 'a\.count'\?\)"):
        Config.load(path, small, env={})
    with pytest.raises(ConfigError, match=r"did you mean 'b\.mode'\?"):
        set_value(path, small, "b.mdoe", "slow")
    with pytest.raises(ConfigError, match=r"^unknown config key 'zzz\.qqq'$"):
        small.get("zzz.qqq")


@pytest.fixture
def partly_loaded() -> ConfigRegistry:
    """Bundled plugins not installed (none loaded from entry points), ``direct``
    disabled, and a third-party ``broken`` plugin that failed to load."""
    pm = create_plugin_manager(load_entrypoints=False, disabled=["direct"], env={})
    pm.failed.append(PluginFailure(name="broken", error="ImportError: boom"))
    return build_registry(pm)


def test_keys_of_plugins_not_loaded_are_ignored_with_one_warning_each(
    partly_loaded: ConfigRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[node]\nalias = "me"\n[direct]\nprobe_interval = "30s"\ndial_timeout = "2s"\n'
        '[broken]\nsetting = 1\n[relay]\nca_file = "/ca.pem"\n'
    )
    with caplog.at_level(logging.WARNING, logger="tmax_mesh.config"):
        cfg = Config.load(path, partly_loaded, env={})
    assert cfg.get("node.alias") == "me"
    lines = sorted(r.getMessage() for r in caplog.records)
    assert len(lines) == 3, lines
    assert "'broken.setting' ignored: plugin 'broken' is not loaded (failed to load)" in lines[0]
    assert (
        "'direct.probe_interval', 'direct.dial_timeout' ignored: plugin 'direct' is not loaded (disabled)"
        in lines[1]
    )
    assert "'relay.ca_file' ignored: plugin 'relay' is not loaded (not installed)" in lines[2]


def test_keys_of_plugins_not_loaded_are_kept_when_the_file_is_edited(
    partly_loaded: ConfigRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[direct]\nprobe_interval = "30s"\n[ratelimit]\nrate = 2.5\n')
    set_value(path, partly_loaded, "node.alias", "me")
    assert unset_value(path, partly_loaded, "node.alias")
    assert path.read_text() == '[direct]\nprobe_interval = "30s"\n\n[ratelimit]\nrate = 2.5\n'
    with pytest.raises(ConfigError, match="belongs to plugin 'direct', which is disabled"):
        set_value(path, partly_loaded, "direct.probe_interval", "10s")
    with pytest.raises(ConfigError, match="belongs to plugin 'session_mailbox', which is not installed"):
        partly_loaded.get("session_mailbox.session")
    path.write_text("[nosuchplugin]\nsetting = 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'nosuchplugin\.setting'"):
        Config.load(path, partly_loaded, env={})


def test_registry_for_another_program() -> None:
    """Another environment prefix and plain (un-namespaced) names, as tmax-host uses."""
    reg = ConfigRegistry(env_prefix="TMAX_HOST_", namespaced=False)
    reg.add("max_connections", int, 10, "streams", metavar="N")
    assert reg.get("max_connections").env_var == "TMAX_HOST_MAX_CONNECTIONS"
    assert Config.load(None, reg, env={"TMAX_HOST_MAX_CONNECTIONS": "3"}).get("max_connections") == 3
    with pytest.raises(ConfigError, match="invalid config key name"):
        reg.add("a.b", int, 1, "dotted")
    with pytest.raises(ConfigError, match="invalid config key name"):
        ConfigRegistry().add("plain", int, 1, "not namespaced")


# ------------------------------------------------------------------ editing


def test_set_get_unset_round_trip(registry: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    assert set_value(path, registry, "node.peer_listen", "0.0.0.0:7400") == "0.0.0.0:7400"
    assert set_value(path, registry, "node.relays", "relay.example:443, other:443") == [
        "relay.example:443",
        "other:443",
    ]
    assert set_value(path, registry, "ratelimit.burst", "50") == 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = Config.load(path, registry, env={})
    assert cfg.get("node.peer_listen") == "0.0.0.0:7400"
    assert cfg.get("node.relays") == ["relay.example:443", "other:443"]
    assert (cfg.get("ratelimit.burst"), cfg.source("ratelimit.burst")) == (50, "file")

    assert unset_value(path, registry, "ratelimit.burst") is True
    assert "ratelimit" not in path.read_text()  # empty table pruned
    assert unset_value(path, registry, "ratelimit.burst") is False
    cfg = Config.load(path, registry, env={})
    assert (cfg.get("ratelimit.burst"), cfg.source("ratelimit.burst")) == (
        registry.get("ratelimit.burst").default,
        "default",
    )
    assert cfg.get("node.peer_listen") == "0.0.0.0:7400"
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp files left


def test_unset_on_missing_file(registry: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert unset_value(path, registry, "node.alias") is False
    assert not path.exists()
    with pytest.raises(ConfigError):
        unset_value(path, registry, "no.such")


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("messages.max_bytes", "big"),
        ("messages.max_bytes", "-5"),
        ("messages.ttl", "forever"),
        ("node.peer_listen", "no-port"),
        ("no.such", "1"),
        ("ratelimit.rate", "true"),
    ],
)
def test_invalid_set_leaves_file_untouched(
    registry: ConfigRegistry, tmp_path: Path, key: str, text: str
) -> None:
    path = tmp_path / "config.toml"
    original = b'# my comment\n[node]\nalias = "box"   \n'
    path.write_bytes(original)
    before = path.stat()
    with pytest.raises(ConfigError):
        set_value(path, registry, key, text)
    assert path.read_bytes() == original
    assert path.stat().st_ino == before.st_ino
    with pytest.raises(ConfigError):
        unset_value(path, registry, "no.such")
    assert path.read_bytes() == original


def test_set_refuses_to_rewrite_invalid_file(registry: ConfigRegistry, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    for original in [b"[node]\nbogus = 1\n", b"[node\n"]:
        path.write_bytes(original)
        with pytest.raises(ConfigError, match=str(path)):
            set_value(path, registry, "node.alias", "x")
        assert path.read_bytes() == original


def test_config_path(tmp_path: Path) -> None:
    assert config_path(tmp_path, None, env={}) == tmp_path / "config.toml"
    assert config_path(tmp_path, None, env={"TMAX_MESH_CONFIG": "/e/c.toml"}) == Path("/e/c.toml")
    assert config_path(tmp_path, "/cli.toml", env={"TMAX_MESH_CONFIG": "/e/c.toml"}) == Path("/cli.toml")


# ------------------------------------------------------------------ state dir


@pytest.mark.parametrize(
    ("cli", "env", "want"),
    [
        # The 0.1 defaults, now from platformdirs: unchanged on Linux.
        (None, {}, "HOME/.local/state/tmax"),
        (None, {"XDG_STATE_HOME": "/xdg"}, "/xdg/tmax"),
        (None, {"XDG_STATE_HOME": "relative"}, "HOME/.local/state/tmax"),  # the XDG spec: ignored
        (None, {"XDG_STATE_HOME": "/xdg", "TMAX_STATE_DIR": "/env/state"}, "/env/state"),
        (None, {"TMAX_STATE_DIR": "~/st"}, "HOME/st"),
        ("CWD/cli", {"XDG_STATE_HOME": "/xdg", "TMAX_STATE_DIR": "/env/state"}, "CWD/cli"),
    ],
)
def test_resolve_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: str | None, env: dict[str, str], want: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_STATE_HOME", "TMAX_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli = cli.replace("CWD", str(tmp_path)) if cli else None
    want_path = Path(want.replace("HOME", str(home)).replace("CWD", str(tmp_path)))
    assert resolve_state_dir(cli) == want_path


def test_no_home_and_no_state_dir_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setenv("HOME", "")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("TMAX_STATE_DIR", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(StateDirError, match="--state-dir or TMAX_STATE_DIR"):
        resolve_state_dir(None)


def test_ensure_state_dir(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        created = ensure_state_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert created.is_dir() and stat.S_IMODE(created.stat().st_mode) == 0o700
    assert ensure_state_dir(created) == created
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(StateDirError, match="not a directory") as err:
        ensure_state_dir(afile)
    assert str(afile) in str(err.value)


def test_socket_path(tmp_path: Path) -> None:
    assert socket_path(tmp_path, env={}) == tmp_path / "node.sock"
    assert socket_path(tmp_path, env={"TMAX_NODE_SOCKET": "/run/x.sock"}) == Path("/run/x.sock")
    assert socket_path(tmp_path, "/cli.sock", env={"TMAX_NODE_SOCKET": "/run/x.sock"}) == Path("/cli.sock")
    deep = Path("/tmp") / ("d" * 120)
    with pytest.raises(StateDirError, match="too long for a Unix socket") as err:
        socket_path(deep, env={})
    assert "--socket" in str(err.value) and "TMAX_NODE_SOCKET" in str(err.value)
    assert socket_path(deep, "/tmp/short.sock", env={}) == Path("/tmp/short.sock")


def test_concurrent_sets_lose_no_change(registry: ConfigRegistry, tmp_path: Path) -> None:
    """Each `config set` is a read-modify-write of the whole file; run at once,
    none may overwrite another's change."""
    cfg = tmp_path / "config.toml"
    changes = {
        "messages.ttl": "2h",
        "messages.retry_initial": "3s",
        "messages.retry_max": "5m",
        "node.alias": "racer",
        "node.relays": "grpc://h1:1",
        "invites.default_ttl": "3d",
    }
    with ThreadPoolExecutor(len(changes)) as pool:
        list(pool.map(lambda kv: set_value(cfg, registry, *kv), changes.items()))
    cfg_values = Config.load(cfg, registry, env={})
    for key, text in changes.items():
        assert cfg_values.get(key) == registry.parse_value(key, text), key
