"""``tmax-host``: the relay + rendezvous server (DESIGN §10, §14).

Every option is a flag, and may also be set in a TOML ``--config`` file (top
level or under ``[host]``, names as the flags without ``--``, dashes or
underscores); flags win over the file. See docs/relay.md for deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tmax_core.config import is_wildcard_host
from tmax_core.durations import parse_duration_ms
from tmax_core.errors import MeshError, UsageError
from tmax_core.logs import add_logging_arguments, setup_logging
from tmax_core.readyfile import remove_ready_file, write_ready_file
from tmax_mesh_relay import __version__, wire
from tmax_mesh_relay.hub import HostLimits, Hub
from tmax_mesh_relay.proto import host_pb2_grpc
from tmax_mesh_relay.storeforward import QueueLimits

log = logging.getLogger("tmax_mesh.host")

SERVICE_NAME = "tmax_mesh.host.v1.HostService"
SHUTDOWN_GRACE_S = 2.0


class HostError(Exception):
    """A start-up problem reported as one line (no traceback)."""


# -- option table: one place for flags, config-file keys, types and defaults ----------


def _host_port(text: str) -> str:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return str(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a whole number above 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a number above 0")
    return value


def _seconds(text: str) -> float:
    try:
        return parse_duration_ms(str(text)) / 1000
    except UsageError as err:
        raise ValueError(str(err)) from None


def _public_url(text: str) -> str:
    url = wire.parse_relay_url(str(text))
    if is_wildcard_host(url.host):
        raise ValueError(f"{text!r} is a wildcard address; give the name or address nodes dial")
    return url.url


@dataclass(frozen=True)
class Option:
    name: str
    metavar: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    repeatable: bool = False


OPTIONS = [
    Option(
        "listen", "HOST:PORT", _host_port, "0.0.0.0:7447", "serve HostService here (port 0 = any free port)"
    ),
    Option("tls-cert", "FILE", str, None, "PEM certificate chain: serve TLS (nodes dial grpcs://)"),
    Option("tls-key", "FILE", str, None, "PEM private key of --tls-cert"),
    Option("metrics-listen", "HOST:PORT", _host_port, None, "serve Prometheus metrics at http://HOST:PORT/"),
    Option("max-connections", "N", _positive_int, 10_000, "open streams allowed; more are refused"),
    Option(
        "max-connections-per-ip",
        "N",
        _positive_int,
        64,
        "open streams from one IPv4 address or IPv6 /64; more are refused",
    ),
    Option(
        "register-rate",
        "PER_S",
        _positive_float,
        10.0,
        "sustained new streams/s from one IPv4 address or IPv6 /64",
    ),
    Option("register-burst", "N", _positive_int, 64, "new streams one address may open at once"),
    Option("max-lookup-allow", "N", _positive_int, 1000, "node ids in one lookup allow list"),
    Option(
        "remembered-allow-bytes",
        "N",
        _positive_int,
        64 * 1024 * 1024,
        "bytes of offline nodes' allow lists kept to gate store-and-forward",
    ),
    Option("max-frame-bytes", "N", _positive_int, 1024 * 1024 + 64 * 1024, "largest relayed envelope"),
    Option("rate", "FRAMES_PER_S", _positive_float, 100.0, "sustained frames/s read from one connection"),
    Option("burst", "N", _positive_int, 200, "frames one connection may send at once before pacing"),
    Option("lookup-rate", "PER_S", _positive_float, 2.0, "sustained lookups/s per connection"),
    Option("lookup-burst", "N", _positive_int, 10, "lookup burst per connection"),
    Option("queue-max-messages", "N", _positive_int, 1000, "envelopes stored per offline node"),
    Option("queue-max-bytes", "N", _positive_int, 16 * 1024 * 1024, "bytes stored per offline node"),
    Option("queue-ttl", "DURATION", _seconds, 86_400.0, "how long a stored envelope is kept"),
    Option("queue-total-bytes", "N", _positive_int, 256 * 1024 * 1024, "bytes stored for all nodes"),
    Option("queue-sender-bytes", "N", _positive_int, 64 * 1024 * 1024, "bytes stored from one sender"),
    Option("queue-max-recipients", "N", _positive_int, 100_000, "offline nodes with stored envelopes"),
    Option("register-timeout", "DURATION", _seconds, 10.0, "time a new stream has to register"),
    Option("idle-timeout", "DURATION", _seconds, 0.0, "close registered streams silent this long (0 = off)"),
    Option(
        "write-timeout", "DURATION", _seconds, 5.0, "a stream that does not take a frame this fast is dropped"
    ),
    Option("keepalive", "DURATION", _seconds, 30.0, "HTTP/2 ping interval towards nodes"),
    Option(
        "keepalive-timeout", "DURATION", _seconds, 10.0, "drop a connection whose HTTP/2 ping goes unanswered"
    ),
    Option(
        "host-id", "TEXT", str, None, "stable host id signed into registrations (default: random per run)"
    ),
    Option(
        "public-url",
        "URL",
        _public_url,
        None,
        "a URL nodes dial to reach this host (repeatable); registrations signed for any other URL are "
        "refused. Default: --listen's address when it is concrete, else loopback only",
        repeatable=True,
    ),
]
_BY_KEY = {o.name.replace("-", "_"): o for o in OPTIONS}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tmax-host", description="Run a tmax-mesh relay + rendezvous host.")
    for o in OPTIONS:

        def convert(text: str, o: Option = o) -> Any:
            try:
                return o.convert(text)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None

        default = f" (default {o.default})" if o.default not in (None, 0.0) else ""
        p.add_argument(
            f"--{o.name}",
            metavar=o.metavar,
            type=convert,
            default=None,
            help=o.help + default,
            action="append" if o.repeatable else "store",
        )
    p.add_argument("--config", metavar="FILE", help="TOML file with the same options (flags win)")
    p.add_argument("--ready-file", metavar="FILE", help="write a JSON ready file here once listening")
    add_logging_arguments(p)
    p.add_argument("--version", action="version", version=f"tmax-host {__version__}")
    return p


def resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < config file < flags, keyed by option name with underscores."""
    settings = default_settings()
    if args.config:
        settings.update(_read_config(Path(args.config)))
    for key in _BY_KEY:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if bool(settings["tls_cert"]) != bool(settings["tls_key"]):
        raise HostError("give both --tls-cert and --tls-key (or neither)")
    return settings


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise HostError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise HostError(f"config file {path} is not valid TOML: {err}") from None
    table = data.get("host", data) if isinstance(data.get("host"), dict) else data
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        option = _BY_KEY.get(key)
        if option is None:
            raise HostError(f"config file {path}: unknown option {raw_key!r}")
        try:
            if option.repeatable:
                values = value if isinstance(value, list) else [value]
                out[key] = [option.convert(str(v)) for v in values]
            else:
                out[key] = option.convert(str(value))
        except ValueError as err:
            raise HostError(f"config file {path}: {raw_key}: {err}") from None
    return out


def limits_from(settings: dict[str, Any]) -> HostLimits:
    s = settings
    return HostLimits(
        max_connections=s["max_connections"],
        max_connections_per_ip=s["max_connections_per_ip"],
        register_rate_per_s=s["register_rate"],
        register_burst=s["register_burst"],
        max_lookup_allow=s["max_lookup_allow"],
        remembered_allow_bytes=s["remembered_allow_bytes"],
        max_frame_bytes=s["max_frame_bytes"],
        rate_per_s=s["rate"],
        burst=s["burst"],
        lookup_rate_per_s=s["lookup_rate"],
        lookup_burst=s["lookup_burst"],
        register_timeout_s=s["register_timeout"],
        idle_timeout_s=s["idle_timeout"],
        write_timeout_s=s["write_timeout"],
        queue=QueueLimits(
            max_messages=s["queue_max_messages"],
            max_bytes=s["queue_max_bytes"],
            ttl_s=s["queue_ttl"],
            total_bytes=s["queue_total_bytes"],
            sender_bytes=s["queue_sender_bytes"],
            max_recipients=s["queue_max_recipients"],
        ),
    )


def server_options(settings: dict[str, Any]) -> list[tuple[str, Any]]:
    # Frames up to the hard gRPC limit are read and answered with a too_large
    # Error (the stream stays usable); only beyond it does gRPC end the stream.
    hard_limit = 2 * settings["max_frame_bytes"] + 64 * 1024
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", hard_limit),
        ("grpc.max_send_message_length", hard_limit),
        # Liveness through HTTP/2 pings: nearly free, unlike application pings (DESIGN §10).
        ("grpc.keepalive_time_ms", int(settings["keepalive"] * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings["keepalive_timeout"] * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        # A node needs one stream; cap what one TCP connection can open, and
        # close TCP connections left without a stream (e.g. refused ones).
        ("grpc.max_concurrent_streams", 16),
        ("grpc.max_connection_idle_ms", 60_000),
    ]


def _tls_credentials(cert_path: str, key_path: str) -> tuple[grpc.ServerCredentials, bytes]:
    """Server credentials and the SHA-256 of the certificate (DER) they present,
    which registrations must be signed for."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

    def read(flag: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as err:
            raise HostError(f"cannot read {flag} {path}: {err.strerror}") from None

    cert, key = read("--tls-cert", cert_path), read("--tls-key", key_path)
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError:
        raise HostError(f"--tls-cert {cert_path} holds no PEM certificate") from None
    try:
        load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise HostError(f"--tls-key {key_path} holds no unencrypted PEM private key") from None
    digest = hashlib.sha256(leaf.public_bytes(Encoding.DER)).digest()
    return grpc.ssl_server_credentials([(key, cert)]), digest


class HostServicer(host_pb2_grpc.HostServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self.hub.serve(context)


def default_settings() -> dict[str, Any]:
    """Every option at its default (for embedding a host, e.g. in tests)."""
    return {key: o.default for key, o in _BY_KEY.items()}


def public_urls(settings: dict[str, Any], bound: str) -> list[str]:
    """The URLs registrations may be signed for: ``--public-url``, else the bound
    ``--listen`` address when it is concrete, else (wildcard listen) only the
    loopback URLs on the bound port; a wildcard cannot say which names and
    addresses nodes use, and accepting any would let another relay replay
    registrations here (docs/relay.md, "Public URLs")."""
    if settings["public_url"]:
        return list(dict.fromkeys(settings["public_url"]))
    scheme = "grpcs" if settings["tls_cert"] else "grpc"
    host, _, port = bound.rpartition(":")
    if not is_wildcard_host(host):
        return [f"{scheme}://{bound}"]
    return [f"{scheme}://{h}:{port}" for h in ("127.0.0.1", "[::1]", "localhost")]


def build_server(hub: Hub, settings: dict[str, Any]) -> tuple[grpc.aio.Server, Any, str, bytes]:
    """A server with HostService and the health service, bound to ``listen``
    (not started); returns it, the health servicer, the bound HOST:PORT and
    the SHA-256 of its TLS certificate (empty without TLS)."""
    server = grpc.aio.server(options=server_options(settings))
    host_pb2_grpc.add_HostServiceServicer_to_server(HostServicer(hub), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    listen = settings["listen"]
    cert_sha256 = b""
    try:
        if settings["tls_cert"]:
            credentials, cert_sha256 = _tls_credentials(settings["tls_cert"], settings["tls_key"])
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise HostError(f"cannot listen on {listen}: address in use or not available here")
    return server, health, f"{listen.rpartition(':')[0]}:{port}", cert_sha256


async def serve(settings: dict[str, Any], ready_file: Path | None) -> None:
    host_id = (settings["host_id"] or "").encode() or os.urandom(16)
    if len(host_id) > wire.MAX_HOST_ID_LEN:
        raise HostError(f"--host-id is longer than {wire.MAX_HOST_ID_LEN} bytes")
    hub = Hub(limits_from(settings), wire.HostIdentity(host_id, []))
    server, health, bound, cert_sha256 = build_server(hub, settings)
    hub.host = wire.HostIdentity(host_id, public_urls(settings, bound), cert_sha256)
    if not settings["public_url"] and is_wildcard_host(bound.rpartition(":")[0]):
        log.warning(
            "listening on the wildcard %s without --public-url: only nodes that dial this host on "
            "loopback can register; give --public-url with the URL nodes dial (e.g. grpcs://NAME:PORT)",
            bound,
        )
    tls = bool(settings["tls_cert"])

    metrics_server = None
    metrics_bound = None
    if settings["metrics_listen"]:
        from prometheus_client import disable_created_metrics, start_http_server

        disable_created_metrics()  # the *_created series only add noise here

        m_host, _, m_port = settings["metrics_listen"].rpartition(":")
        try:
            metrics_server, _thread = start_http_server(
                int(m_port), addr=m_host.strip("[]"), registry=hub.metrics.registry
            )
        except OSError as err:
            raise HostError(f"cannot serve metrics on {settings['metrics_listen']}: {err.strerror}") from None
        metrics_bound = f"{m_host}:{metrics_server.server_port}"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper: asyncio.Task | None = None
    try:
        await server.start()
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        sweeper = asyncio.create_task(hub.run_sweeper(), name="host-sweeper")
        if ready_file is not None:
            write_ready_file(ready_file, {"pid": os.getpid(), "listen": bound, "metrics": metrics_bound})
        log.info(
            "tmax-host %s listening on %s (%s), metrics %s, host id %s",
            __version__,
            bound,
            "TLS" if tls else "plaintext",
            metrics_bound or "off",
            host_id.hex() if not settings["host_id"] else settings["host_id"],
        )
        log.info("accepting registrations for %s", ", ".join(hub.host.public_urls))
        await stop.wait()
        log.info("shutting down")
    finally:
        remove_ready_file(ready_file)
        await health.enter_graceful_shutdown()
        await hub.shutdown()
        await server.stop(SHUTDOWN_GRACE_S)
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if metrics_server is not None:
            metrics_server.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        settings = resolve_settings(args)
        asyncio.run(serve(settings, Path(args.ready_file) if args.ready_file else None))
    except (HostError, MeshError) as err:  # MeshError: the ready file could not be written
        print(f"tmax-host: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
