"""Operating tmax-node: ``--metrics-listen`` serves Prometheus metrics (parsed
here with prometheus_client's parser) and ``/healthz``; ``sd_notify`` tells
systemd READY=1 and STOPPING=1 through a real NOTIFY_SOCKET."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.harness import ProcGroup, befriend, script, wait_for
from tests.metrics import fetch, samples

LISTEN = ("--peer-listen", "127.0.0.1:0")


def test_metrics_count_messages_outbox_rejections_and_relay_links(procs: ProcGroup) -> None:
    host = procs.host()
    a = procs.node("a", *LISTEN, "--relay", host.url, "--metrics-listen", "127.0.0.1:0")
    b = procs.node("b", *LISTEN)
    listen = a.ready["metrics"]
    link = f'tmax_node_relay_link_up{{state="connected",url="{host.url}"}}'
    wait_for(lambda: samples(fetch(listen)).get(link) == 1.0, what="the relay link reported up")

    befriend(a, b, alias="alice")
    before = samples(fetch(listen))
    inbound = 'tmax_node_messages_in_total{path="direct"}'
    assert b.cli("msg", "send", "--to", "alice", "--wait", "hello")["status"] == "delivered"
    assert a.cli("msg", "send", "--to", b.node_id, "--wait", "hi")["path"] == "direct"
    a.cli("friends", "block", b.node_id)
    refused = b.run("msg", "send", "--to", "alice", "--wait", "--json", "go away")
    assert refused.returncode == 1

    after = samples(fetch(listen))
    assert after[inbound] == before.get(inbound, 0) + 1
    delivered = 'tmax_node_messages_out_total{path="direct",status="delivered"}'
    assert after[delivered] == before.get(delivered, 0) + 1
    assert after['tmax_node_ingress_rejections_total{reason="blocked"}'] == 1
    assert after['tmax_node_outbox_messages{status="delivered"}'] >= 1
    assert after['tmax_node_outbox_messages{status="queued"}'] == 0
    assert after['tmax_node_transport_up{state="connected",transport="relay"}'] == 1
    assert after["tmax_node_friends"] == 1

    with urllib.request.urlopen(f"http://{listen}/healthz", timeout=10) as resp:
        assert (resp.status, resp.read()) == (200, b"ok\n")


def test_bad_metrics_address_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        [script("tmax-node"), "--state-dir", str(tmp_path / "n"), "--metrics-listen", "127.0.0.1:http"],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert (
        res.stderr.decode()
        .splitlines()[-1]
        .startswith("tmax-node: error: cannot serve metrics on 127.0.0.1:http")
    )


def test_sd_notify_ready_and_stopping(procs: ProcGroup, tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(address))
        systemd.settimeout(30)
        node = procs.node("a", env={"NOTIFY_SOCKET": str(address)})
        ready = systemd.recv(4096).decode().split("\n")
        assert (
            ready[0] == "READY=1"
            and ready[1] == f"STATUS=node {node.node_id}, local API on {node.ready['socket']}"
        )
        assert node.stop() == 0
        assert systemd.recv(4096) == b"STOPPING=1"
