"""tmax-host option resolution: defaults < config file < environment < flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tmax_core.config import Config
from tmax_core.errors import ConfigError
from tmax_mesh_relay.host import (
    OPTIONS,
    build_parser,
    limits_from,
    main,
    public_urls,
    resolve_settings,
    server_options,
)
from tmax_mesh_relay.limits import HostLimits


def settings(*argv: str, env: dict[str, str] | None = None) -> Config:
    return resolve_settings(build_parser().parse_args(list(argv)), env={} if env is None else env)


def test_defaults() -> None:
    s = settings()
    assert s.get("listen") == "0.0.0.0:7447" and s.get("metrics_listen") == "" and s.get("tls_cert") == ""
    limits = limits_from(s)
    assert limits.max_connections == 10_000 and limits.queue.ttl_s == 86_400
    assert ("grpc.so_reuseport", 0) in server_options(s)
    assert ("grpc.keepalive_time_ms", 30_000) in server_options(s)


def test_limits_defaults_come_from_host_limits() -> None:
    """Options left at their defaults give exactly HostLimits() (one source of defaults)."""
    assert limits_from(settings()) == HostLimits()
    changed = dataclasses.replace(HostLimits(), max_connections=5)
    assert limits_from(settings("--max-connections", "5")) == changed


def test_every_option_is_a_flag_and_an_environment_variable() -> None:
    help_text = build_parser().format_help()
    for ck in OPTIONS:
        flag = "--" + ck.key.replace("_", "-")
        assert flag in help_text, flag
        assert ck.env_var == "TMAX_HOST_" + ck.key.upper()


def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "host.toml"
    cfg.write_text('[host]\nlisten = "127.0.0.1:9000"\nmax-connections = 50\nqueue_ttl = "1h"\nrate = 5\n')
    s = settings("--config", str(cfg), "--max-connections", "70")
    assert (s.get("listen"), s.get("max_connections"), limits_from(s).queue.ttl_s, s.get("rate")) == (
        "127.0.0.1:9000",
        70,
        3600.0,
        5.0,
    )
    flat = tmp_path / "flat.toml"
    flat.write_text('idle-timeout = "90s"\n')
    assert limits_from(settings("--config", str(flat))).idle_timeout_s == 90.0


def test_environment_variable_sets_an_option() -> None:
    s = settings(env={"TMAX_HOST_MAX_CONNECTIONS": "123", "TMAX_HOST_QUEUE_TTL": "2h"})
    assert s.get("max_connections") == 123 and s.source("max_connections") == "env"
    assert limits_from(s).queue.ttl_s == 7200.0
    urls = settings(env={"TMAX_HOST_PUBLIC_URL": "grpcs://a.example.org:443,grpc://b.example.org:7447"})
    assert urls.get("public_url") == ["grpcs://a.example.org:443", "grpc://b.example.org:7447"]


def test_flag_beats_environment() -> None:
    s = settings("--max-connections", "7", env={"TMAX_HOST_MAX_CONNECTIONS": "123"})
    assert s.get("max_connections") == 7 and s.source("max_connections") == "cli"


def test_environment_beats_file(tmp_path: Path) -> None:
    cfg = tmp_path / "host.toml"
    cfg.write_text("max_connections = 50\nburst = 9\n")
    s = settings("--config", str(cfg), env={"TMAX_HOST_MAX_CONNECTIONS": "60"})
    assert (s.get("max_connections"), s.source("max_connections")) == (60, "env")
    assert (s.get("burst"), s.source("burst")) == (9, "file")


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("TMAX_HOST_MAX_CONNECTIONS", "many", r"'many' \(int"),
        ("TMAX_HOST_MAX_CONNECTIONS", "0", "must be greater than 0"),
        ("TMAX_HOST_QUEUE_TTL", "soon", "invalid duration"),
        ("TMAX_HOST_LISTEN", "nowhere", "not HOST:PORT"),
    ],
)
def test_bad_environment_value_names_the_variable(name: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=f"^environment variable {name}: .*{needle}"):
        settings(env={name: value})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1\n", "unknown config key 'nonsense'"),
        ("max_conections = 5\n", "did you mean 'max_connections'"),
        ("max_connections = 0\n", "max_connections: must be greater than 0"),
        ("max_connections = '50'\n", "expected int"),
        ("listen = 'nowhere'\n", "not HOST:PORT"),
        ("public-url = 'grpc://0.0.0.0:7447'\n", "wildcard address"),
        ("[host\n", "invalid TOML"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "host.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        settings("--config", str(cfg))


def test_missing_config_and_half_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        settings("--config", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="both --tls-cert and --tls-key"):
        settings("--tls-cert", "x.pem")


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        settings("--queue-ttl", "soon")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --queue-ttl: invalid duration 'soon'" in err


def test_bad_option_from_environment_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMAX_HOST_BURST", "lots")
    assert main(["--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tmax-host: error: environment variable TMAX_HOST_BURST: ") and err.count("\n") == 1


def test_public_urls_default_from_a_concrete_listen_address() -> None:
    assert public_urls(settings("--listen", "127.0.0.1:0"), "127.0.0.1:4100") == ["grpc://127.0.0.1:4100"]
    tls = settings("--listen", "[::1]:0", "--tls-cert", "c.pem", "--tls-key", "k.pem")
    assert public_urls(tls, "[::1]:443") == ["grpcs://[::1]:443"]


def test_public_urls_with_a_wildcard_listen_are_loopback_only() -> None:
    assert public_urls(settings(), "0.0.0.0:7447") == [
        "grpc://127.0.0.1:7447",
        "grpc://[::1]:7447",
        "grpc://localhost:7447",
    ]


def test_public_url_flags_and_config(tmp_path: Path) -> None:
    s = settings("--public-url", "grpcs://relay.example.org:443", "--public-url", "grpc://10.0.0.5:7447")
    assert public_urls(s, "0.0.0.0:7447") == ["grpcs://relay.example.org:443", "grpc://10.0.0.5:7447"]
    cfg = tmp_path / "host.toml"
    cfg.write_text('[host]\npublic-url = ["grpcs://a.example.org:443", "grpcs://b.example.org:443"]\n')
    assert settings("--config", str(cfg)).get("public_url") == [
        "grpcs://a.example.org:443",
        "grpcs://b.example.org:443",
    ]
    cfg.write_text('public_url = "grpc://c.example.org"\n')
    assert settings("--config", str(cfg)).get("public_url") == ["grpc://c.example.org"]
    assert settings("--config", str(cfg), "--public-url", "grpc://d.example.org").get("public_url") == [
        "grpc://d.example.org"
    ]


@pytest.mark.parametrize("bad", ["grpc://0.0.0.0:7447", "http://relay.example.org", "grpc://"])
def test_bad_public_url_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        settings("--public-url", bad)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--public-url" in err and "Traceback" not in err
