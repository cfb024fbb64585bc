"""Process-level test harness: spawn the real console scripts, wait on their
ready files (never a fixed sleep), talk to them through the real CLI, and
always clean them up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.polling import wait_for  # the process tests import it from here

# Where every console script is spawned from (see :func:`script`): the test's
# own venv. A test that installed the product elsewhere points it there
# (``monkeypatch.setattr(harness, "BIN", venv / "bin")``, as test_packaging does).
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a process that
    must come back on the same port, or be told its port before it starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(name: str) -> str:
    """The path of console script ``name`` in :data:`BIN` (read on every call)."""
    path = BIN / name
    if not path.exists():
        raise RuntimeError(f"{name} is not installed in {BIN}; run the README's install command")
    return str(path)


class Proc:
    """A daemon started from a console script, with its ready file and log."""

    def __init__(
        self,
        argv: list[str],
        ready_file: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.argv = argv
        self.ready_file = ready_file
        self.log_path = log_path
        self.env = env
        self.prefix = prefix or []
        self.proc: subprocess.Popen | None = None
        self.ready: dict[str, Any] = {}

    def start(self, timeout: float = READY_TIMEOUT_S) -> Proc:
        self.ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(
            [*self.prefix, *self.argv, "--ready-file", str(self.ready_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.log()}")
            return self.ready_file.exists()

        wait_for(ready, timeout, what=f"{Path(self.argv[0]).name} ready file")
        self.ready = json.loads(self.ready_file.read_text())
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class Node(Proc):
    """A ``tmax-node`` plus the ``tmax-mesh`` CLI pointed at its state dir."""

    def __init__(
        self, state_dir: Path, *extra: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
    ) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state_dir.chmod(0o700)  # as the daemon would create it (mkdir's mode obeys the umask)
        self.state_dir = state_dir
        self.extra = list(extra)
        super().__init__(
            [script("tmax-node"), "--state-dir", str(state_dir), *extra],
            state_dir / "ready.json",
            state_dir.parent / f"{state_dir.name}.log",
            env,
            prefix,
        )

    @property
    def node_id(self) -> str:
        return self.ready["node_id"]

    def run(
        self, *args: str, input: bytes | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess:
        """Run ``tmax-mesh --state-dir DIR ARGS`` (inside the same prefix, e.g. a namespace)."""
        env = {**os.environ, **(self.env or {})}
        return subprocess.run(
            [*self.prefix, script("tmax-mesh"), "--state-dir", str(self.state_dir), *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            env=env,
        )

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 60.0) -> Any:
        """Run a CLI command with ``--json``; assert success; return the parsed output."""
        res = self.run(*args, "--json", input=input, timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(
                f"tmax-mesh {' '.join(args)} failed ({res.returncode}): "
                f"{res.stderr.decode(errors='replace')}\nnode log:\n{self.log()}"
            )
        out = res.stdout.decode()
        return json.loads(out) if out.strip() else None

    def invite(self, *args: str) -> str:
        return self.cli("invite", "create", *args)["token"]

    def inbox_bodies(self) -> list[str]:
        return [m["body"] for m in self.cli("inbox", "list")]


class Host(Proc):
    """A ``tmax-host`` relay (port 0 unless ``--listen`` is given; the bound one is in ``ready``)."""

    def __init__(self, root: Path, name: str, *extra: str, prefix: list[str] | None = None) -> None:
        args = list(extra)
        if "--listen" not in args:
            args = ["--listen", "127.0.0.1:0", *args]
        self.extra = args
        super().__init__(
            [script("tmax-host"), *args], root / f"{name}.ready.json", root / f"{name}.log", None, prefix
        )

    @property
    def listen(self) -> str:
        return self.ready["listen"]

    @property
    def url(self) -> str:
        """``grpc://HOST:PORT`` (``grpcs://`` when started with ``--tls-cert``)."""
        scheme = "grpcs" if "--tls-cert" in self.extra else "grpc"
        return f"{scheme}://{self.listen}"

    @property
    def metrics(self) -> str | None:
        return self.ready.get("metrics")

    def restart_same_port(self, sig: int = signal.SIGKILL) -> Host:
        """Stop (SIGKILL by default) and start again on the port it had."""
        listen = self.listen
        self.stop(sig)
        args = list(self.extra)
        args[args.index("--listen") + 1] = listen
        self.extra = args
        self.argv = [script("tmax-host"), *args]
        return self.start()


class ProcGroup:
    """Every process a test starts; the fixture stops them all at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []

    def node(self, name: str, *extra: str, start: bool = True, **kw: Any) -> Node:
        node = Node(self.root / name, *extra, **kw)
        self.procs.append(node)
        return node.start() if start else node

    def host(self, name: str = "host", *extra: str, start: bool = True, **kw: Any) -> Host:
        host = Host(self.root, name, *extra, **kw)
        self.procs.append(host)
        return host.start() if start else host

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def befriend(inviter: Node, invitee: Node, *invite_args: str, alias: str | None = None) -> dict[str, Any]:
    """``inviter`` creates an invite, ``invitee`` accepts it; wait until the inviter knows the invitee."""
    token = inviter.invite(*invite_args)
    friend = invitee.cli("invite", "accept", token, *(["--alias", alias] if alias else []))
    wait_for(
        lambda: any(f["node_id"] == invitee.node_id for f in inviter.cli("friends", "list")),
        what="first contact to reach the inviter",
    )
    return friend
