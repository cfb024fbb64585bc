"""``tmax-host``: the relay + rendezvous server (DESIGN §10, §14).

Every option is declared once, in :func:`_declare`, on the same config
registry machinery as the node's (:mod:`tmax_core.config`): it is a flag
(``--max-connections``), an environment variable (``TMAX_HOST_MAX_CONNECTIONS``)
and a key of the TOML ``--config`` file (top level or under ``[host]``, dashes
or underscores). Flags win over the environment, which wins over the file.
Adding an option is one ``registry.add`` call. See docs/relay.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tmax_core.errors import ConfigError, MeshError
from tmax_core.plugin.helpers import (
    Config,
    ConfigRegistry,
    MetricsServer,
    add_logging_arguments,
    is_wildcard_host,
    notify,
    read_toml,
    remove_ready_file,
    setup_logging,
    validate_duration,
    validate_host_port,
    validate_positive,
    write_ready_file,
)
from tmax_mesh_relay import __version__, clusterjoin, clusterstart, wire, workers
from tmax_mesh_relay.hosttls import HostError, ReloadableTls
from tmax_mesh_relay.hub import Hub
from tmax_mesh_relay.limits import HostLimits
from tmax_mesh_relay.proto import host_pb2_grpc
from tmax_mesh_relay.storeforward import QueueLimits

log = logging.getLogger("tmax_mesh.host")

SERVICE_NAME = "tmax_mesh.host.v1.HostService"
SHUTDOWN_GRACE_S = 2.0
ENV_PREFIX = "TMAX_HOST_"
EXIT_ERROR = 1
EXIT_USAGE = 2


# -- options: one declaration each (flag, environment variable, config file key) ------


def _listen_address(value: str) -> None:
    if value == "":
        raise ValueError("must not be empty")
    validate_host_port(value)


def _public_urls(value: list[Any]) -> None:
    for item in value:
        url = wire.parse_relay_url(str(item))
        if is_wildcard_host(url.host):
            raise ValueError(f"{item!r} is a wildcard address; give the name or address nodes dial")


def _cluster_urls(value: str) -> None:
    if value:  # empty: no cluster
        clusterstart.parse_cluster_urls(value)


def _host_id(value: str) -> None:
    if len(value.encode()) > wire.MAX_HOST_ID_LEN:
        raise ValueError(f"longer than {wire.MAX_HOST_ID_LEN} bytes")


def _duration(seconds: float) -> str:
    """A default in seconds (as :class:`HostLimits` keeps it) as duration text."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _declare(registry: ConfigRegistry) -> ConfigRegistry:
    """Every tmax-host option. Limits take their defaults from :class:`HostLimits`
    and :class:`QueueLimits` (written there only)."""
    limits, queue = HostLimits(), QueueLimits()

    def add(key: str, type: type, default: Any, metavar: str, help: str, **kw: Any) -> None:
        registry.add(key, type, default, help, metavar=metavar, **kw)

    def count(key: str, default: int, help: str) -> None:
        add(key, int, default, "N", help, validate=validate_positive)

    def duration(key: str, seconds: float, help: str) -> None:
        add(key, str, _duration(seconds), "DURATION", help, validate=validate_duration)

    add(
        "listen",
        str,
        "0.0.0.0:7447",
        "HOST:PORT",
        "serve HostService here (port 0 = any free port)",
        validate=_listen_address,
    )
    add("tls_cert", str, "", "FILE", "PEM certificate chain: serve TLS (nodes dial grpcs://)")
    add("tls_key", str, "", "FILE", "PEM private key of --tls-cert")
    add(
        "metrics_listen",
        str,
        "",
        "HOST:PORT",
        "serve Prometheus metrics at http://HOST:PORT/",
        validate=validate_host_port,
    )
    add(
        "punch_listen",
        str,
        "",
        "HOST:PORT",
        "hole-punching observer (TCP; default: the --listen host, any free port; "
        "a wildcard host listens on IPv4 and IPv6)",
        validate=validate_host_port,
    )
    count("max_connections", limits.max_connections, "open streams allowed; more are refused")
    count(
        "max_connections_per_ip",
        limits.max_connections_per_ip,
        "open streams from one IPv4 address or IPv6 /64; more are refused",
    )
    add(
        "register_rate",
        float,
        limits.register_rate_per_s,
        "PER_S",
        "sustained new streams/s from one IPv4 address or IPv6 /64",
        validate=validate_positive,
    )
    count("register_burst", limits.register_burst, "new streams one address may open at once")
    count("max_lookup_allow", limits.max_lookup_allow, "node ids in one lookup allow list")
    count(
        "remembered_allow_bytes",
        limits.remembered_allow_bytes,
        "bytes of offline nodes' allow lists kept to gate store-and-forward",
    )
    count("max_frame_bytes", limits.max_frame_bytes, "largest relayed envelope")
    add(
        "rate",
        float,
        limits.rate_per_s,
        "FRAMES_PER_S",
        "sustained frames/s read from one connection",
        validate=validate_positive,
    )
    count("burst", limits.burst, "frames one connection may send at once before pacing")
    add(
        "lookup_rate",
        float,
        limits.lookup_rate_per_s,
        "PER_S",
        "sustained lookups/s per connection",
        validate=validate_positive,
    )
    count("lookup_burst", limits.lookup_burst, "lookup burst per connection")
    count("queue_max_messages", queue.max_messages, "envelopes stored per offline node")
    count("queue_max_bytes", queue.max_bytes, "bytes stored per offline node")
    duration("queue_ttl", queue.ttl_s, "how long a stored envelope is kept")
    count("queue_total_bytes", queue.total_bytes, "bytes stored for all nodes")
    count("queue_sender_bytes", queue.sender_bytes, "bytes stored from one sender")
    count("queue_max_recipients", queue.max_recipients, "offline nodes with stored envelopes")
    duration("register_timeout", limits.register_timeout_s, "time a new stream has to register")
    duration("idle_timeout", limits.idle_timeout_s, "close registered streams silent this long (0s = off)")
    duration(
        "write_timeout", limits.write_timeout_s, "a stream that does not take a frame this fast is dropped"
    )
    duration("keepalive", 30.0, "HTTP/2 ping interval towards nodes")
    duration("keepalive_timeout", 10.0, "drop a connection whose HTTP/2 ping goes unanswered")
    add(
        "host_id",
        str,
        "",
        "TEXT",
        "stable host id signed into registrations (default: random per run)",
        validate=_host_id,
    )
    add(
        "public_url",
        list,
        [],
        "URL",
        "a URL nodes dial to reach this host (repeatable); registrations signed for any other URL are "
        "refused. Default: --listen's address when it is concrete, else loopback only",
        validate=_public_urls,
    )
    add(
        "cluster",
        str,
        "",
        "URL[,URL...]",
        "join the relay cluster of these NATS servers (nats://HOST:PORT; needs tmax-mesh-relay[cluster])",
        validate=_cluster_urls,
    )
    count(
        "cluster_replicas",
        1,
        "JetStream replicas of the cluster's held envelopes (at most the NATS cluster's servers)",
    )
    add(
        "workers",
        int,
        1,
        "N",
        "run N host processes sharing the port as one cluster (a local nats-server unless --cluster)",
        validate=workers.check_workers,
    )
    add(
        "cluster_store",
        str,
        "",
        "DIR",
        "where --workers' local nats-server keeps held envelopes (default: "
        "~/.local/state/tmax/host-PORT/jetstream, a temporary dir with --listen port 0)",
    )
    return registry


OPTIONS = _declare(ConfigRegistry(env_prefix=ENV_PREFIX, namespaced=False))
"""The host's options (a :class:`ConfigRegistry` with plain names like ``listen``)."""


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _flag_type(key: str, repeated: bool) -> Any:
    """An argparse ``type`` checking one flag value as the registry does (so a
    bad value is a usage error naming the flag)."""

    def convert(text: str) -> Any:
        try:
            if repeated:
                return OPTIONS.check(key, [text])[0]
            return OPTIONS.parse_value(key, text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"invalid value for {key}: ")) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tmax-host",
        description="Run a tmax-mesh relay + rendezvous host.",
        epilog=f"Every option is also an environment variable ({ENV_PREFIX}MAX_CONNECTIONS for "
        "--max-connections) and a key of the --config file; flags win over the environment, "
        "which wins over the file.",
    )
    for ck in OPTIONS:
        repeated = ck.type is list
        default = f" (default {ck.default})" if ck.default not in ("", [], "0s") else ""
        p.add_argument(
            _flag(ck.key),
            dest=ck.key,
            metavar=ck.metavar,
            type=_flag_type(ck.key, repeated),
            default=None,
            help=ck.help + default,
            action="append" if repeated else "store",
        )
    p.add_argument("--config", metavar="FILE", help="TOML file with the same options (top level or [host])")
    p.add_argument("--ready-file", metavar="FILE", help="write a JSON ready file here once listening")
    add_logging_arguments(p)
    p.add_argument("--version", action="version", version=f"tmax-host {__version__}")
    return p


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults < the TOML file at ``path`` < ``TMAX_HOST_*`` variables.
    Raises :class:`ConfigError`.

    The file's options may stand at the top level or in a ``[host]`` table,
    with dashes or underscores (``max-connections``, as the flag), and a
    repeatable option may be one string instead of a list.
    """
    options: dict[str, Any] = {}
    if path is not None:
        doc = read_toml(path)
        if doc is None:
            raise ConfigError(f"cannot read config file {path}: No such file or directory")
        host = doc.pop("host", {}) if isinstance(doc.get("host"), dict) else {}
        for name, value in {**doc, **host}.items():
            key = name.replace("-", "_")
            repeatable = key in OPTIONS and OPTIONS.get(key).type is list
            options[key] = [value] if repeatable and isinstance(value, str) else value
    return Config.from_document(OPTIONS, options, path, env)


def resolve_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """Defaults < config file < environment < flags. Raises :class:`ConfigError`."""
    config = load_config(Path(args.config) if args.config else None, env)
    for ck in OPTIONS:
        value = getattr(args, ck.key)
        if value is not None:
            config.override(ck.key, value)
    if bool(config.get("tls_cert")) != bool(config.get("tls_key")):
        raise ConfigError("give both --tls-cert and --tls-key (or neither)")
    return config


def default_settings() -> Config:
    """Every option at its default, whatever the environment (to embed a host, e.g. in tests)."""
    return Config.load(None, OPTIONS, env={})


def _seconds(config: Config, key: str) -> float:
    return config.get_duration_ms(key) / 1000


def limits_from(config: Config) -> HostLimits:
    g = config.get
    return HostLimits(
        max_connections=g("max_connections"),
        max_connections_per_ip=g("max_connections_per_ip"),
        register_rate_per_s=g("register_rate"),
        register_burst=g("register_burst"),
        max_lookup_allow=g("max_lookup_allow"),
        remembered_allow_bytes=g("remembered_allow_bytes"),
        max_frame_bytes=g("max_frame_bytes"),
        rate_per_s=g("rate"),
        burst=g("burst"),
        lookup_rate_per_s=g("lookup_rate"),
        lookup_burst=g("lookup_burst"),
        register_timeout_s=_seconds(config, "register_timeout"),
        idle_timeout_s=_seconds(config, "idle_timeout"),
        write_timeout_s=_seconds(config, "write_timeout"),
        queue=QueueLimits(
            max_messages=g("queue_max_messages"),
            max_bytes=g("queue_max_bytes"),
            ttl_s=_seconds(config, "queue_ttl"),
            total_bytes=g("queue_total_bytes"),
            sender_bytes=g("queue_sender_bytes"),
            max_recipients=g("queue_max_recipients"),
        ),
    )


def server_options(settings: Config) -> list[tuple[str, Any]]:
    # Frames up to the hard gRPC limit are read and answered with a too_large
    # Error (the stream stays usable); only beyond it does gRPC end the stream.
    hard_limit = 2 * settings.get("max_frame_bytes") + 64 * 1024
    return [
        # Off, or a second process silently shares the port; on only among --workers.
        ("grpc.so_reuseport", int(workers.is_worker())),
        ("grpc.max_receive_message_length", hard_limit),
        ("grpc.max_send_message_length", hard_limit),
        # Liveness through HTTP/2 pings: nearly free, unlike application pings (DESIGN §10).
        ("grpc.keepalive_time_ms", settings.get_duration_ms("keepalive")),
        ("grpc.keepalive_timeout_ms", settings.get_duration_ms("keepalive_timeout")),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        # A node needs one stream; cap what one TCP connection can open, and
        # close TCP connections left without a stream (e.g. refused ones).
        ("grpc.max_concurrent_streams", 16),
        ("grpc.max_connection_idle_ms", 60_000),
    ]


class HostServicer(host_pb2_grpc.HostServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self.hub.serve(context)


def public_urls(settings: Config, bound: str) -> list[str]:
    """The URLs registrations may be signed for: ``--public-url``, else the bound
    ``--listen`` address when it is concrete, else (wildcard listen) only the
    loopback URLs on the bound port; a wildcard cannot say which names and
    addresses nodes use, and accepting any would let another relay replay
    registrations here (docs/relay.md, "Public URLs")."""
    if settings.get("public_url"):
        return list(dict.fromkeys(settings.get("public_url")))
    scheme = "grpcs" if settings.get("tls_cert") else "grpc"
    host, _, port = bound.rpartition(":")
    if not is_wildcard_host(host):
        return [f"{scheme}://{bound}"]
    return [f"{scheme}://{h}:{port}" for h in ("127.0.0.1", "[::1]", "localhost")]


def build_server(hub: Hub, settings: Config) -> tuple[grpc.aio.Server, Any, str, ReloadableTls | None]:
    """A server with HostService and the health service, bound to ``listen``
    (not started); returns it, the health servicer, the bound HOST:PORT and
    its TLS certificate (None without TLS)."""
    server = grpc.aio.server(options=server_options(settings))
    host_pb2_grpc.add_HostServiceServicer_to_server(HostServicer(hub), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    listen = settings.get("listen")
    tls = None
    try:
        if settings.get("tls_cert"):
            tls = ReloadableTls(settings.get("tls_cert"), settings.get("tls_key"))
            port = server.add_secure_port(listen, tls.credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise HostError(f"cannot listen on {listen}: address in use or not available here")
    return server, health, f"{listen.rpartition(':')[0]}:{port}", tls


async def start_punch(hub: Hub, listen: str) -> int:
    """Start the hole-punching observer (DESIGN §16) on ``listen``; returns its port."""
    host, _, port = listen.rpartition(":")
    try:
        return await hub.punch.start(host, int(port))
    except OSError as err:
        raise HostError(f"cannot listen on {listen} (--punch-listen): {err.strerror or err}") from None


async def serve(settings: Config, ready_file: Path | None) -> None:
    host_id = settings.get("host_id").encode() or os.urandom(16)
    hub = Hub(limits_from(settings), wire.HostIdentity(host_id, []))
    server, health, bound, tls = build_server(hub, settings)
    hub.host = wire.HostIdentity(host_id, public_urls(settings, bound), tls.cert_sha256 if tls else b"")
    if not settings.get("public_url") and is_wildcard_host(bound.rpartition(":")[0]):
        log.warning(
            "listening on the wildcard %s without --public-url: only nodes that dial this host on "
            "loopback can register; give --public-url with the URL nodes dial (e.g. grpcs://NAME:PORT)",
            bound,
        )
    stop = asyncio.Event()
    metrics_server = None
    if settings.get("metrics_listen"):
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # the *_created series only add noise here
        metrics_server = MetricsServer(
            settings.get("metrics_listen"), hub.metrics.registry, healthy=lambda: not stop.is_set()
        )
    metrics_bound = metrics_server.bound if metrics_server else None

    cluster = None
    if settings.get("cluster"):
        urls = clusterstart.parse_cluster_urls(settings.get("cluster"))
        cluster = await clusterjoin.join(hub, urls, settings.get("cluster_replicas"))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload_tls, hub, tls)
    sweeper: asyncio.Task | None = None
    try:
        await server.start()
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        sweeper = asyncio.create_task(hub.run_sweeper(), name="host-sweeper")
        punch_port = await start_punch(hub, settings.get("punch_listen") or f"{bound.rpartition(':')[0]}:0")
        if ready_file is not None:
            ready = {"pid": os.getpid(), "listen": bound, "metrics": metrics_bound, "punch_port": punch_port}
            write_ready_file(ready_file, ready)
        log.info(
            "tmax-host %s listening on %s (%s), metrics %s, host id %s",
            __version__,
            bound,
            "TLS" if tls else "plaintext",
            metrics_bound or "off",
            host_id.hex() if not settings.get("host_id") else settings.get("host_id"),
        )
        log.info("accepting registrations for %s", ", ".join(hub.host.public_urls))
        notify("READY=1", f"STATUS=listening on {bound}")
        await stop.wait()
        log.info("shutting down")
        notify("STOPPING=1")
    finally:
        remove_ready_file(ready_file)
        await health.enter_graceful_shutdown()
        await hub.shutdown()
        await server.stop(SHUTDOWN_GRACE_S)
        if cluster is not None:
            await cluster.close()
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if metrics_server is not None:
            metrics_server.close()


def _reload_tls(hub: Hub, tls: ReloadableTls) -> None:
    """SIGHUP: new connections get the certificate now in the files, and
    registrations are signed for it; established connections are untouched."""
    if tls.reload():
        hub.host = wire.HostIdentity(hub.host.host_id, hub.host.public_urls, tls.cert_sha256)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 after a clean shutdown, 1 for a start-up problem, 2 for a bad option
    (flag, environment variable or config file), each told in one line."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        settings = resolve_settings(args)
    except ConfigError as err:
        print(f"tmax-host: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    ready_file = Path(args.ready_file) if args.ready_file else None
    try:
        if workers.store_misused(settings):
            print(f"tmax-host: error: {workers.STORE_MISUSE}", file=sys.stderr)
            return EXIT_USAGE
        if settings.get("workers") > 1 and not workers.is_worker():
            return workers.supervise(sys.argv[1:] if argv is None else argv, settings, ready_file)
        asyncio.run(serve(settings, ready_file))
    except (HostError, MeshError) as err:  # MeshError: the ready file could not be written
        print(f"tmax-host: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
