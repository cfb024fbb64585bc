"""tmax-host option resolution: defaults < config file < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmax_mesh_relay.host import HostError, build_parser, limits_from, resolve_settings, server_options


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
