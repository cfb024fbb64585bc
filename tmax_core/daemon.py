"""``tmax-node``: the node daemon.

Start-up order: state dir, single-instance lock, plugins, config, identity,
state database, node (transports, sinks, peer listener), local API socket,
ready file. SIGTERM/SIGINT stop it gracefully in the reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

import grpc

from tmax_core import __version__
from tmax_core.api import NodeApiServicer
from tmax_core.config import Config, build_registry, config_path
from tmax_core.errors import MeshError, StateDirError
from tmax_core.identity import load_or_create
from tmax_core.logs import add_logging_arguments, setup_logging
from tmax_core.metricsserver import MetricsServer
from tmax_core.node import Node
from tmax_core.nodemetrics import NodeMetrics
from tmax_core.plugin.manager import create_plugin_manager
from tmax_core.proto import node_pb2_grpc
from tmax_core.readyfile import remove_ready_file, write_ready_file
from tmax_core.sdnotify import notify
from tmax_core.statedir import ensure_state_dir, resolve_state_dir, socket_path
from tmax_core.store import Store

log = logging.getLogger("tmax_mesh.daemon")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tmax-node", description="Run the tmax-mesh node daemon.")
    p.add_argument("--state-dir", help="state folder (default: $TMAX_STATE_DIR, $XDG_STATE_HOME/tmax)")
    p.add_argument("--socket", help="local API Unix socket (default: STATE_DIR/node.sock)")
    p.add_argument("--config", help="config file (default: STATE_DIR/config.toml)")
    p.add_argument("--recovery-key", help="recovery key file (default: STATE_DIR/recovery.key)")
    p.add_argument("--peer-listen", metavar="HOST:PORT", help="serve PeerService for direct delivery")
    p.add_argument(
        "--peer-advertise",
        action="append",
        metavar="HOST:PORT",
        help="where friends dial the peer listener, if not as bound (a forwarded port; repeatable)",
    )
    p.add_argument("--relay", action="append", metavar="URL", help="relay host URL (repeatable)")
    p.add_argument("--ready-file", help="write a JSON ready file here once listening")
    p.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics (and /healthz) over HTTP here"
    )
    add_logging_arguments(p)
    p.add_argument("--version", action="version", version=f"tmax-node {__version__}")
    return p


class InstanceLock:
    """An exclusive flock on STATE_DIR/node.lock: one daemon per state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "node.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(self.fd, 32).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise StateDirError(
                f"another tmax-node (pid {other}) is already running on {state_dir}; "
                "stop it first or use another --state-dir"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())

    def release(self) -> None:
        os.close(self.fd)


async def run(args: argparse.Namespace) -> None:
    state_dir = ensure_state_dir(resolve_state_dir(args.state_dir))
    sock = socket_path(state_dir, args.socket)
    lock = InstanceLock(state_dir)
    try:
        pm = create_plugin_manager()
        config = Config.load(config_path(state_dir, args.config), build_registry(pm))
        if args.peer_listen:
            config.override("node.peer_listen", args.peer_listen)
        if args.peer_advertise:
            config.override("node.peer_advertise", list(args.peer_advertise))
        if args.relay:
            config.override("node.relays", list(args.relay))
        recovery = args.recovery_key or os.environ.get("TMAX_RECOVERY_KEY_FILE")
        identity = load_or_create(state_dir, Path(recovery) if recovery else None)
        store = Store.open(state_dir / "state.db")
        node = Node(
            state_dir=state_dir, config=config, pm=pm, identity=identity, store=store, socket_path=sock
        )
        await serve(node, sock, Path(args.ready_file) if args.ready_file else None, args.metrics_listen)
    finally:
        lock.release()


async def serve(node: Node, sock: Path, ready_file: Path | None, metrics_listen: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    metrics: MetricsServer | None = None
    server = grpc.aio.server()
    try:
        node_pb2_grpc.add_NodeApiServicer_to_server(NodeApiServicer(node), server)
        node.pm.hook.tmax_register_services(server=server, node=node)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()  # stale: we hold the instance lock, so no live daemon owns it
        old_umask = os.umask(0o177)  # the socket is created 0600
        try:
            if server.add_insecure_port(f"unix:{sock}") == 0:
                raise StateDirError(f"cannot bind the local API socket {sock}")
        finally:
            os.umask(old_umask)
        await server.start()
        os.chmod(sock, 0o600)
        if metrics_listen:
            metrics = MetricsServer(metrics_listen, NodeMetrics(node, loop).registry)
        if ready_file is not None:
            write_ready_file(
                ready_file,
                {
                    "pid": os.getpid(),
                    "node_id": node.node_id_hex,
                    "socket": str(sock),
                    "peer_listen": node.peer_listen,
                    "metrics": metrics.bound if metrics else None,
                },
            )
        log.info("local API on %s%s", sock, f", metrics on {metrics.bound}" if metrics else "")
        notify("READY=1", f"STATUS=node {node.node_id_hex}, local API on {sock}")
        await stop.wait()
        log.info("shutting down")
        notify("STOPPING=1")
    finally:
        if metrics is not None:
            metrics.close()
        remove_ready_file(ready_file)
        await server.stop(grace=2.0)
        await node.stop()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        asyncio.run(run(args))
    except MeshError as err:
        print(f"tmax-node: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
