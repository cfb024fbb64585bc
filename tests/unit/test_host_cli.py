"""tmax-host option resolution: defaults < config file < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmax_mesh_relay.host import (
    HostError,
    build_parser,
    limits_from,
    public_urls,
    resolve_settings,
    server_options,
)


def settings(*argv: str) -> dict:
    return resolve_settings(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    s = settings()
    assert s["listen"] == "0.0.0.0:7447" and s["metrics_listen"] is None and s["tls_cert"] is None
    limits = limits_from(s)
    assert limits.max_connections == 10_000 and limits.queue.ttl_s == 86_400
    assert ("grpc.so_reuseport", 0) in server_options(s)


def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "host.toml"
    cfg.write_text('[host]\nlisten = "127.0.0.1:9000"\nmax-connections = 50\nqueue_ttl = "1h"\nrate = 5\n')
    s = settings("--config", str(cfg), "--max-connections", "70")
    assert (s["listen"], s["max_connections"], s["queue_ttl"], s["rate"]) == (
        "127.0.0.1:9000",
        70,
        3600.0,
        5.0,
    )
    flat = tmp_path / "flat.toml"
    flat.write_text('idle-timeout = "90s"\n')
    assert settings("--config", str(flat))["idle_timeout"] == 90.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1\n", "unknown option 'nonsense'"),
        ("max_connections = 0\n", "max_connections"),
        ("listen = 'nowhere'\n", "not HOST:PORT"),
        ("[host\n", "not valid TOML"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "host.toml"
    cfg.write_text(text)
    with pytest.raises(HostError, match=message):
        settings("--config", str(cfg))


def test_missing_config_and_half_tls(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="cannot read config file"):
        settings("--config", str(tmp_path / "missing.toml"))
    with pytest.raises(HostError, match="both --tls-cert and --tls-key"):
        settings("--tls-cert", "x.pem")


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        settings("--queue-ttl", "soon")
    assert info.value.code == 2
    assert "invalid duration" in capsys.readouterr().err


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
    assert settings("--config", str(cfg))["public_url"] == [
        "grpcs://a.example.org:443",
        "grpcs://b.example.org:443",
    ]
    cfg.write_text('public_url = "grpc://c.example.org"\n')
    assert settings("--config", str(cfg))["public_url"] == ["grpc://c.example.org"]


@pytest.mark.parametrize("bad", ["grpc://0.0.0.0:7447", "http://relay.example.org", "grpc://"])
def test_bad_public_url_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        settings("--public-url", bad)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--public-url" in err and "Traceback" not in err
