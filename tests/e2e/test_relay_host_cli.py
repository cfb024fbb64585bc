"""The tmax-host command: one-line errors, exit codes, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.harness import ProcGroup, script


def run_host(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [script("tmax-host"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def last_line(res: subprocess.CompletedProcess) -> str:
    lines = [line for line in res.stderr.splitlines() if line.startswith("tmax-host:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_port_in_use(procs: ProcGroup) -> None:
    host = procs.host()
    res = run_host("--listen", host.listen)
    assert res.returncode == 1
    assert (
        last_line(res)
        == f"tmax-host: error: cannot listen on {host.listen}: address in use or not available here"
    )
    res = run_host("--listen", "127.0.0.1:0", "--metrics-listen", host.listen)
    assert res.returncode == 1 and "cannot serve metrics" in last_line(res)


def test_unreadable_or_invalid_certificate(tmp_path: Path) -> None:
    res = run_host("--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "no.pem"), "--tls-key", "k")
    assert res.returncode == 1
    assert (
        last_line(res)
        == f"tmax-host: error: cannot read --tls-cert {tmp_path / 'no.pem'}: No such file or directory"
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    res = run_host("--listen", "127.0.0.1:0", "--tls-cert", str(junk), "--tls-key", str(junk))
    assert res.returncode == 1 and "holds no PEM certificate" in last_line(res)


def test_ready_file_planted_as_a_symlink(tmp_path: Path) -> None:
    """One line and exit 1, not a traceback, and the symlink's target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "ready.json").symlink_to(victim)
    res = run_host("--listen", "127.0.0.1:0", "--ready-file", str(tmp_path / "ready.json"))
    assert res.returncode == 1 and "is a symlink" in last_line(res)
    assert victim.read_text() == "precious\n"


def test_sigterm_is_graceful(procs: ProcGroup) -> None:
    host = procs.host("host", "--metrics-listen", "127.0.0.1:0", "--log-format", "json")
    assert host.ready["pid"] == host.pid and host.metrics
    assert host.stop(signal.SIGTERM) == 0
    assert not host.ready_file.exists()
    assert '"msg": "shutting down"' in host.log()


def test_options_from_the_environment(procs: ProcGroup) -> None:
    host = procs.host("host", start=False)
    host.env = {"TMAX_HOST_METRICS_LISTEN": "127.0.0.1:0"}
    host.start()
    assert host.metrics is not None and host.metrics.startswith("127.0.0.1:")


def test_bad_options_exit_2_with_one_line(tmp_path: Path) -> None:
    """A bad value from the environment or the config file is a usage error,
    like a bad flag: exit 2, one line naming where the value came from."""
    res = run_host("--listen", "127.0.0.1:0", env={"TMAX_HOST_QUEUE_TTL": "soon"})
    assert res.returncode == 2
    assert last_line(res).startswith("tmax-host: error: environment variable TMAX_HOST_QUEUE_TTL: ")
    cfg = tmp_path / "host.toml"
    cfg.write_text("[host]\nmax-conections = 5\n")
    res = run_host("--listen", "127.0.0.1:0", "--config", str(cfg))
    assert res.returncode == 2
    assert last_line(res) == (
        f"tmax-host: error: config file {cfg}: unknown config key 'max_conections' "
        "(did you mean 'max_connections'?)"
    )
