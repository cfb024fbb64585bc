"""Starting a cluster member: bad ``--cluster`` values and unusable NATS servers
get one line and exit 1 (or 2 for a usage error), never showing a URL's
credentials; JetStream not ready yet is waited for, JetStream missing is not;
a standalone host never loads NATS."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import nats.errors
import nats.js.errors
import pytest
from prometheus_client import CollectorRegistry

from tests.cluster.natsproc import NatsServer
from tests.harness import script
from tmax_mesh_relay import jsready
from tmax_mesh_relay.cluster import Cluster
from tmax_mesh_relay.clusterstart import ClusterError, parse_cluster_urls, scrub, without_credentials
from tmax_mesh_relay.jsready import JetStreamStart, not_ready_reason
from tmax_mesh_relay.limits import HostLimits

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


def test_nats_without_jetstream_is_one_line_at_once(tmp_path: Path) -> None:
    """Not waited for as a JetStream still electing its leader would be: nothing will change."""
    server = NatsServer(tmp_path, jetstream=False).start()
    try:
        began = time.monotonic()
        err = one_line_error(run_host("--cluster", server.url))
        took = time.monotonic() - began
    finally:
        server.kill()
    assert f"NATS at {server.url} has no usable JetStream (run nats-server with -js)" in err, err
    assert took < jsready.READY_WAIT_S / 3, took


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
    for bad in (
        f"nats://u:{SECRET}@127.0.0.1:99999",
        f"nats://{SECRET}@h:x",
        f"nats://u:{SECRET}@[::1",
        f"nats://u:{SECRET[:3]},{SECRET[3:]}@h:4222",  # a comma in the password cuts the list there
    ):
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


# -- JetStream missing, or not ready yet --------------------------------------------------------


class ProbedNats:
    """Answers ``$JS.API.INFO`` with ``answer`` (or raises it), as nats-server would."""

    def __init__(self, answer: bytes | BaseException) -> None:
        self.answer = answer
        self.requests = 0

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:
        assert subject == jsready.API_INFO
        self.requests += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return SimpleNamespace(data=self.answer)


def api_error(code: int, err_code: int, description: str) -> bytes:
    return json.dumps({"error": {"code": code, "err_code": err_code, "description": description}}).encode()


ACCOUNT_INFO = b'{"type": "io.nats.jetstream.api.v1.account_info_response", "streams": 0}'


async def test_jetstream_without_a_meta_leader_is_not_ready_yet() -> None:
    # A clustered server without a meta leader says nothing for its first seconds, then 10008.
    unavailable = api_error(503, 10008, "JetStream system temporarily unavailable")
    for answer in (nats.errors.TimeoutError(), unavailable):
        assert await not_ready_reason(ProbedNats(answer), "N") == "no meta leader yet"
    assert await not_ready_reason(ProbedNats(ACCOUNT_INFO), "N") is None


async def test_jetstream_missing_or_refused_fails_at_once() -> None:
    for answer, message in (
        (nats.errors.NoRespondersError(), "NATS at N has no usable JetStream (run nats-server with -js)"),
        (
            api_error(503, 10039, "jetstream not enabled for account"),
            "NATS at N refuses JetStream to this member: jetstream not enabled for account",
        ),
        (b"<html>", "NATS at N answered $JS.API.INFO with no JetStream answer"),
        (b'["a list"]', "NATS at N answered $JS.API.INFO with no JetStream answer"),
    ):
        with pytest.raises(ClusterError) as err:
            await not_ready_reason(ProbedNats(answer), "N")
        assert str(err.value) == message


async def test_a_setup_step_is_tried_again_while_the_nats_cluster_is_forming(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise nats.js.errors.BadRequestError(code=400, err_code=10005, description="no suitable peers")
        return "set up"

    nc = ProbedNats(ACCOUNT_INFO)
    with caplog.at_level(logging.INFO, logger="tmax_mesh.host"):
        assert await JetStreamStart(nc, "N").run(step) == "set up"
    assert len(calls) == 3
    assert nc.requests == 3  # asked again before each try that follows a "still forming"
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waiting == [f"waiting for JetStream at N ({jsready.FORMING[jsready.NO_PEERS]})"]


async def test_a_ready_jetstream_is_asked_once_for_all_the_setup_steps() -> None:
    """The member's four steps on a ready server cost one $JS.API.INFO request, not four;
    a step failing as "still forming" makes the next try ask again, and only that one."""
    nc = ProbedNats(ACCOUNT_INFO)
    start = JetStreamStart(nc, "N")
    failures = [nats.js.errors.ServiceUnavailableError(code=503, err_code=10008, description="no leader")]

    async def step(n: int) -> int:
        if n == 2 and failures:
            raise failures.pop()
        return n

    assert [await start.run(functools.partial(step, n)) for n in range(2)] == [0, 1]
    assert nc.requests == 1
    assert [await start.run(functools.partial(step, n)) for n in range(2, 4)] == [2, 3]
    assert nc.requests == 2


async def test_a_setup_step_failing_otherwise_is_not_tried_again() -> None:
    calls = []

    async def step() -> None:
        calls.append(1)
        raise nats.js.errors.BadRequestError(code=400, err_code=10052, description="invalid stream config")

    with pytest.raises(nats.js.errors.BadRequestError):
        await JetStreamStart(ProbedNats(ACCOUNT_INFO), "N").run(step)
    assert len(calls) == 1


async def test_jetstream_not_ready_in_time_is_one_line() -> None:
    async def step() -> None:
        raise AssertionError("JetStream was never ready: the step must not run")

    start = JetStreamStart(ProbedNats(nats.errors.TimeoutError()), "N", wait_s=0.3)
    with pytest.raises(ClusterError) as err:
        await start.run(step)
    assert str(err.value) == "NATS at N: JetStream was not ready within 0.3 s (no meta leader yet)"


async def test_a_setup_step_is_tried_again_while_its_new_bucket_elects_a_leader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write to an R3 bucket created a moment before can find no stream leader yet
    (no responders): CI saw a member exit on it. The step is tried again, without
    asking $JS.API.INFO again (the meta leader is there)."""
    calls = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise nats.js.errors.NoStreamResponseError()
        return "set up"

    nc = ProbedNats(ACCOUNT_INFO)
    with caplog.at_level(logging.INFO, logger="tmax_mesh.host"):
        assert await JetStreamStart(nc, "N").run(step) == "set up"
    assert len(calls) == 3
    assert nc.requests == 1
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waiting == [f"waiting for JetStream at N ({jsready.WAITING_FOR_STREAM_LEADER})"]


async def test_a_bucket_that_never_elects_a_leader_is_one_line() -> None:
    async def step() -> None:
        raise nats.js.errors.NoStreamResponseError()

    start = JetStreamStart(ProbedNats(ACCOUNT_INFO), "N", wait_s=0.3)
    with pytest.raises(ClusterError) as err:
        await start.run(step)
    assert str(err.value) == (
        f"NATS at N: JetStream was not ready within 0.3 s ({jsready.WAITING_FOR_STREAM_LEADER})"
    )
