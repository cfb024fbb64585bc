"""``tmax-host --workers N``: one command, N processes on one port, one relay
network through the local nats-server it supervises."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request

import pytest

from tests.e2e.test_relay import BULK, api, bodies, metric, wait_registered
from tests.harness import Host, ProcGroup, befriend, script, wait_for

pytestmark = pytest.mark.timeout(120)


def worker_metrics(addr: str) -> str:
    """A worker's metrics ("" while it is down: killed and not yet started again)."""
    try:
        return urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
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
