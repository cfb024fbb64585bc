"""Starting a cluster member: bad ``--cluster`` values and unusable NATS servers
get one line and exit 1 (or 2 for a usage error), never showing a URL's
credentials; a standalone host never loads NATS."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import nats.errors
import pytest
from prometheus_client import CollectorRegistry

from tests.cluster.natsproc import NatsServer
from tests.harness import script
from tmax_mesh_relay.cluster import Cluster
from tmax_mesh_relay.clusterstart import parse_cluster_urls, scrub, without_credentials
from tmax_mesh_relay.hub import HostLimits

if TYPE_CHECKING:
    from tmax_mesh_relay.hub import Hub

pytestmark = pytest.mark.timeout(60)

SECRET = "hunter2"


def run_host(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [script("tmax-host"), "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        timeout=30,
        env={**os.environ, **(env or {})},
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


# -- credentials in --cluster URLs ----------------------------------------------------------


def test_odd_urls_show_no_credentials() -> None:
    for url, shown in (
        (f"nats://alice:{SECRET}@n1.example.org:4222", "nats://***@n1.example.org:4222"),
        (f"tls://{SECRET}@10.0.0.1:4222", "tls://***@10.0.0.1:4222"),
        (f"nats://a:{SECRET}@c:notaport", "nats://***@c:notaport"),
        (f"nats://a@{SECRET}@c:1", "nats://***@c:1"),  # several @: all but the host is hidden
        (f"nats://u:{SECRET}/x@c:1", "nats://***@c:1"),  # an unescaped / in the password
        (f"u:{SECRET}@host:4222", "***@host:4222"),  # no scheme
        ("nats://@host:1", "nats://@host:1"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("", ""),
    ):
        assert without_credentials(url) == shown, url
    for bad in (f"nats://u:{SECRET}@127.0.0.1:99999", f"nats://{SECRET}@h:x", f"nats://u:{SECRET}@[::1"):
        with pytest.raises(ValueError, match="is not a NATS server URL") as err:
            parse_cluster_urls(bad)
        assert SECRET not in str(err.value)


def test_scrub_hides_the_credentials_of_the_urls_in_any_text() -> None:
    urls = [f"nats://u:{SECRET}@h1:4222", "nats://h2:4222"]
    text = f"lost nats://u:{SECRET}@h1:4222 (netloc='u:{SECRET}@h1:4222'), then nats://h2:4222"
    assert scrub(text, urls) == "lost nats://***@h1:4222 (netloc='***@h1:4222'), then nats://h2:4222"


@pytest.mark.parametrize("where", ["flag", "environment", "config file"])
def test_a_malformed_cluster_url_is_one_line_without_its_password(where: str, tmp_path: Path) -> None:
    url = f"nats://u:{SECRET}@127.0.0.1:99999"
    if where == "flag":
        res = run_host("--cluster", url)
    elif where == "environment":
        res = run_host(env={"TMAX_HOST_CLUSTER": url})
    else:
        config = tmp_path / "host.toml"
        config.write_text(f"cluster = {json.dumps(url)}\n")
        res = run_host("--config", str(config))
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 2, (res.returncode, err)
    assert SECRET not in out + err, err
    error_lines = [line for line in err.splitlines() if line.startswith("tmax-host: error:")]
    assert len(error_lines) == 1 and "Traceback" not in err, err
    assert "'nats://***@127.0.0.1:99999' is not a NATS server URL like nats://HOST:PORT" in error_lines[0]


def test_nats_refusing_the_credentials_is_one_line_without_them(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, auth=("u", "right")).start()
    try:
        res = run_host("--cluster", f"nats://u:{SECRET}@127.0.0.1:{server.port}")
    finally:
        server.kill()
    err = one_line_error(res)
    assert SECRET not in err + res.stdout.decode(), err
    assert f"cannot reach NATS at nats://***@127.0.0.1:{server.port}: " in err, err


async def test_nats_client_errors_are_logged_without_the_urls_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The NATS client's errors went to the log as they were, and a client may name its URL."""
    server = NatsServer(tmp_path, auth=("u", SECRET)).start()
    url = f"nats://u:{SECRET}@127.0.0.1:{server.port}"
    hub = SimpleNamespace(metrics=SimpleNamespace(registry=CollectorRegistry()), limits=HostLimits())
    cluster = Cluster(cast("Hub", hub), without_credentials(url))
    try:
        await cluster._connect([url])
        with caplog.at_level(logging.WARNING, logger="tmax_mesh.host"):
            await cluster._on_error(nats.errors.Error(f"nats: lost {url}"))
    finally:
        await cluster._close_nats()
        server.kill()
    assert f"cluster: NATS: nats: lost nats://***@127.0.0.1:{server.port}" in caplog.text
    assert SECRET not in caplog.text
