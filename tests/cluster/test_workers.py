"""``tmax-host --workers N``: one command, N processes on one port, one relay
network through the local nats-server it supervises; NATS credentials kept
off the command line stay off the workers' command lines too."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cluster.natsproc import NatsServer
from tests.e2e.test_relay import BULK, api, bodies, outbox, wait_registered
from tests.harness import Host, ProcGroup, befriend, free_port, script, wait_for
from tests.metrics import fetch, metric
from tmax_mesh_relay.workers import STORE_MISUSE

pytestmark = pytest.mark.timeout(120)


def worker_metrics(addr: str) -> str:
    """A worker's metrics ("" while it is down: killed and not yet started again)."""
    try:
        return fetch(addr)
    except OSError:
        return ""


def registered(host: Host) -> float:
    """Nodes registered over all the workers."""
    return sum(metric(worker_metrics(a), "tmax_host_registered_nodes") for a in host.ready["metrics"])


def test_workers_share_the_port_and_relay_between_them(procs: ProcGroup) -> None:
    host = procs.host("host", "--workers", "2", "--metrics-listen", "127.0.0.1:0")
    assert len(host.ready["workers"]) == 2 and host.ready["cluster"].startswith("nats://127.0.0.1:")
    nodes = [procs.node(name, "--relay", host.url, env=BULK) for name in "abcd"]
    wait_registered(*nodes)
    wait_for(lambda: registered(host) == 4, what="4 registrations over the workers")
    a, b, c, d = nodes
    befriend(a, b)
    befriend(c, d)
    for sender, recipient in ((a, b), (b, a), (c, d), (d, c)):
        with api(sender) as client:
            client.msg_send(recipient.node_id, f"{sender.state_dir.name} says hi".encode())
    wait_for(lambda: all(len(bodies(n)) == 1 for n in nodes), what="each node to get one message")
    assert bodies(a) == ["b says hi"] and bodies(b) == ["a says hi"]

    # A worker killed with SIGKILL is started again (same metrics port); its nodes come back.
    os.kill(host.ready["workers"][0], signal.SIGKILL)
    wait_for(lambda: worker_metrics(host.ready["metrics"][0]) == "", what="the worker to die")
    wait_for(lambda: worker_metrics(host.ready["metrics"][0]), timeout=30, what="the worker to restart")
    wait_for(lambda: registered(host) == 4, timeout=30, what="all 4 registered again")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "0 is not a number of processes from 1 to 256"),
        ("-1", "-1 is not a number of processes from 1 to 256"),
        ("1000", "1000 is not a number of processes from 1 to 256"),
        ("two", "'two' (int: invalid literal"),
    ],
)
def test_invalid_workers_is_a_one_line_usage_error(value: str, says: str) -> None:
    res = subprocess.run(
        [script("tmax-host"), "--listen", "127.0.0.1:0", "--workers", value], capture_output=True, timeout=30
    )
    err = res.stderr.decode().strip().splitlines()
    assert res.returncode == 2
    assert err[-1].startswith("tmax-host: error: argument --workers: ") and says in err[-1], err


def test_held_envelopes_survive_a_restart_of_the_whole_command(procs: ProcGroup, tmp_path: Path) -> None:
    store = tmp_path / "cluster store"
    listen = f"127.0.0.1:{free_port()}"  # the same port after the restart, as in production
    host = procs.host("host", "--workers", "2", "--listen", listen, "--cluster-store", str(store))
    a = procs.node("a", "--relay", host.url, env=BULK)
    b = procs.node("b", "--relay", host.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    b.stop()
    wanted = [f"held {i:02d}" for i in range(20)]
    with api(a) as client:
        client.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in wanted])
    wait_for(lambda: outbox(a).get("sent") == 20, what="20 messages held by the workers")
    a.stop()  # the sender is gone too: only the store can deliver them

    host.stop()  # SIGTERM: the supervisor stops the workers and its nats-server
    assert any((store / "jetstream").iterdir())
    host.start()
    b = procs.node("b", "--relay", host.url, env=BULK)
    wait_for(lambda: len(bodies(b)) >= 20, what="b to receive the held messages")
    assert bodies(b) == wanted  # every one, once


@pytest.mark.parametrize("extra", [[], ["--workers", "2", "--cluster", "nats://127.0.0.1:4222"]])
def test_cluster_store_without_a_local_nats_server_is_a_one_line_usage_error(extra: list[str]) -> None:
    res = subprocess.run(
        [script("tmax-host"), "--listen", "127.0.0.1:0", "--cluster-store", "/tmp/x", *extra],
        capture_output=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert res.stderr.decode().strip() == f"tmax-host: error: {STORE_MISUSE}"


SECRET = "hunter2-workers"


@pytest.mark.parametrize("where", ["environment", "config file"])
def test_workers_do_not_expose_the_cluster_password(where: str, procs: ProcGroup, tmp_path: Path) -> None:
    """A password given where `ps` cannot see it (TMAX_HOST_CLUSTER, the config file) must not
    reach the workers' command lines (/proc/PID/cmdline is world-readable) or the ready file."""
    server = NatsServer(tmp_path, auth=("u", SECRET)).start()
    url = f"nats://u:{SECRET}@127.0.0.1:{server.port}"
    try:
        if where == "environment":
            host = procs.host("host", "--workers", "2", start=False)
            host.env = {"TMAX_HOST_CLUSTER": url}
            host.start()
        else:
            config = tmp_path / "host.toml"
            config.write_text(f'cluster = "{url}"\n')
            config.chmod(0o600)
            host = procs.host("host", "--workers", "2", "--config", str(config))
        ready = host.ready_file.read_text()
        cmdlines = {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for pid in host.ready["workers"]
        }
    finally:
        server.kill()
    assert SECRET not in ready, ready
    assert host.ready["cluster"] == f"nats://***@127.0.0.1:{server.port}"
    assert host.ready_file.stat().st_mode & 0o777 == 0o600
    assert not [c for c in cmdlines.values() if SECRET in c], cmdlines


def test_an_empty_cluster_flag_means_the_local_server(procs: ProcGroup) -> None:
    """`--cluster ''` on the command line (overriding TMAX_HOST_CLUSTER) beats the URL the
    supervisor hands its workers in their environment unless it names the local server too."""
    host = procs.host(
        "host", "--workers", "2", "--cluster", "", "--metrics-listen", "127.0.0.1:0", start=False
    )
    host.env = {"TMAX_HOST_CLUSTER": "nats://127.0.0.1:1"}
    host.start()
    assert (
        host.ready["cluster"].startswith("nats://127.0.0.1:")
        and host.ready["cluster"] != "nats://127.0.0.1:1"
    )
    wait_for(
        lambda: all(
            metric(worker_metrics(a), "tmax_host_cluster_nats_connected") == 1 for a in host.ready["metrics"]
        ),
        what="both workers connected to the local nats-server",
    )
