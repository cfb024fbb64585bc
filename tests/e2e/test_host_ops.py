"""Operating tmax-host: SIGHUP reloads its TLS certificate without dropping
connections, its metrics port answers /healthz, and it tells systemd READY=1
and STOPPING=1."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.test_relay import FAST, make_ca, make_server_cert, relay_status, wait_registered
from tests.harness import ProcGroup, befriend, wait_for


def served_sha256(listen: str, ca: Path) -> bytes:
    """SHA-256 of the certificate a new TLS connection to the host gets (verified against ``ca``)."""
    host, _, port = listen.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).digest()


def file_sha256(pem: Path) -> bytes:
    return hashlib.sha256(
        x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER)
    ).digest()


def test_sighup_reloads_the_certificate_and_keeps_connections(procs: ProcGroup, tmp_path: Path) -> None:
    ca, issuer, issuer_key = make_ca(tmp_path, "ca")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    cert_a, key_a = make_server_cert(tmp_path / "a", issuer, issuer_key)
    cert_b, key_b = make_server_cert(tmp_path / "b", issuer, issuer_key)
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(cert_a, live / "host.pem")
    shutil.copy(key_a, live / "host.key")
    host = procs.host(
        "host",
        "--tls-cert",
        str(live / "host.pem"),
        "--tls-key",
        str(live / "host.key"),
        "--metrics-listen",
        "127.0.0.1:0",
    )
    env = {**FAST, "TMAX_MESH_RELAY_CA_FILE": str(ca)}
    old = procs.node("old", "--relay", host.url, env=env)
    wait_registered(old)
    (link,) = relay_status(old)["hosts"]
    assert served_sha256(host.listen, ca) == file_sha256(cert_a)

    # Renewal: the files change (atomically, as certbot does), then SIGHUP.
    for src, name in ((cert_b, "host.pem"), (key_b, "host.key")):
        shutil.copy(src, live / f".{name}.new")
        os.replace(live / f".{name}.new", live / name)
    assert served_sha256(host.listen, ca) == file_sha256(cert_a)  # nothing changes before the signal
    os.kill(host.pid, signal.SIGHUP)
    wait_for(lambda: served_sha256(host.listen, ca) == file_sha256(cert_b), what="cert B on new connections")

    # A node connecting now registers against certificate B...
    new = procs.node("new", "--relay", host.url, env=env)
    wait_registered(new)
    # ...and the connection made under certificate A is the same one, still working.
    (still,) = relay_status(old)["hosts"]
    assert still["state"] == "connected" and still["connection_id"] == link["connection_id"]
    befriend(old, new, alias="old")
    sent = new.cli("msg", "send", "--to", "old", "--wait", "--timeout", "20", "after the reload")
    assert sent["status"] == "delivered" and sent["path"] == "relay", sent
    assert relay_status(old)["hosts"][0]["connection_id"] == link["connection_id"]
    assert host.alive

    # A broken file on the next SIGHUP keeps the current certificate.
    (live / "host.pem").write_text("not a certificate")
    os.kill(host.pid, signal.SIGHUP)
    wait_for(lambda: "TLS certificate not reloaded" in host.log(), what="the refused reload logged")
    assert served_sha256(host.listen, ca) == file_sha256(cert_b)

    with urllib.request.urlopen(f"http://{host.metrics}/healthz", timeout=10) as resp:
        assert (resp.status, resp.read()) == (200, b"ok\n")
    with urllib.request.urlopen(f"http://{host.metrics}/metrics", timeout=10) as resp:
        assert b"tmax_host_connections" in resp.read()


def test_host_sd_notify_ready_and_stopping(
    procs: ProcGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(address))
        systemd.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))  # the host takes the test's environment
        host = procs.host("host")
        assert systemd.recv(4096).decode().split("\n") == ["READY=1", f"STATUS=listening on {host.listen}"]
        assert host.stop() == 0
        assert systemd.recv(4096) == b"STOPPING=1"
