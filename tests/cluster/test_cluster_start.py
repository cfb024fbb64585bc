"""Starting a cluster member: bad ``--cluster`` values and unusable NATS servers
get one line and exit 1 (or 2 for a usage error); a standalone host never loads NATS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.natsproc import NatsServer
from tests.harness import script
from tmax_mesh_relay.clusterstart import parse_cluster_urls

pytestmark = pytest.mark.timeout(60)


def run_host(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [script("tmax-host"), "--listen", "127.0.0.1:0", *args], capture_output=True, timeout=30
    )


def one_line_error(res: subprocess.CompletedProcess) -> str:
    err = res.stderr.decode().strip()
    assert res.returncode == 1, (res.returncode, err)
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_parse_cluster_urls() -> None:
    assert parse_cluster_urls("nats://a:4222, tls://b:4223") == ["nats://a:4222", "tls://b:4223"]
    for bad in ("", ",", "http://a:1", "nats://a", "nats://:4222", "nats://a:port"):
        with pytest.raises(ValueError):
            parse_cluster_urls(bad)


def test_bad_cluster_url_is_a_usage_error() -> None:
    res = run_host("--cluster", "http://x:1")
    assert res.returncode == 2
    assert "is not a NATS server URL like nats://HOST:PORT" in res.stderr.decode()


def test_unreachable_nats_is_one_line_naming_the_url(nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.kill()
    err = one_line_error(run_host("--cluster", url))
    assert err.startswith(f"tmax-host: error: cannot reach NATS at {url}: "), err


def test_nats_without_jetstream_is_one_line(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, jetstream=False).start()
    try:
        err = one_line_error(run_host("--cluster", server.url))
    finally:
        server.kill()
    assert f"NATS at {server.url} has no usable JetStream (run nats-server with -js)" in err, err


def test_nats_max_payload_below_the_largest_frame_is_one_line(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, max_payload="1MB").start()
    try:
        err = one_line_error(run_host("--cluster", server.url))
    finally:
        server.kill()
    assert "set max_payload (e.g. 2MB) in nats-server's config" in err, err


def test_a_standalone_host_does_not_import_nats() -> None:
    code = (
        "import sys, tmax_mesh_relay.host\n"
        "sys.exit(any(m == 'nats' or m.startswith('nats.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
