"""End-to-end: real ``tmax-node`` processes without peer listeners talk through
a real ``tmax-host`` (store-and-forward, host restarts, TLS, metrics).

Checks that only read state use the local API client directly (spawning the
CLI for every poll would dominate the test time); what the CLI contract
promises is checked through the CLI.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import Node, Proc, ProcGroup, befriend, script, wait_for
from tests.metrics import metric
from tmax_core.client import JsonNodeClient

# These tests are about the relay: on loopback a hole punch would always succeed
# and take messages off it (punching is tested in tests/natlab).
NO_PUNCH = {"TMAX_MESH_DIRECT_PUNCH": "false"}
FAST = {
    **NO_PUNCH,
    # Short retry and reconnect delays keep these tests quick.
    "TMAX_MESH_MESSAGES_RETRY_INITIAL": "200ms",
    "TMAX_MESH_MESSAGES_RETRY_MAX": "1s",
    "TMAX_MESH_RELAY_RECONNECT_MAX": "1s",
}
BULK = {
    **FAST,
    # Bursts of 30-50 messages from one friend exceed the ratelimit plugin's
    # per-friend default on purpose; what is under test here is the relay.
    "TMAX_MESH_DISABLE_PLUGINS": "ratelimit",
}


def api(node: Node) -> JsonNodeClient:
    return JsonNodeClient(Path(node.ready["socket"]))


def relay_status(node: Node) -> dict[str, Any]:
    with api(node) as c:
        status = c.node_status()
    return next(t for t in status["transports"] if t["name"] == "relay")


def wait_registered(*nodes: Node) -> None:
    for node in nodes:
        wait_for(
            lambda n=node: relay_status(n)["state"] == "connected", what=f"{node.state_dir.name} registered"
        )


def bodies(node: Node) -> list[str]:
    with api(node) as c:
        return sorted(m["body"] for m in c.inbox_list())


def outbox(node: Node) -> dict[str, int]:
    with api(node) as c:
        return c.node_status()["outbox"]


def test_relay_message_round_trip(procs: ProcGroup) -> None:
    host = procs.host("host", "--metrics-listen", "127.0.0.1:0", "--log-format", "json")
    a = procs.node("a", "--relay", host.url, env=NO_PUNCH)
    b = procs.node("b", "--relay", host.url, env=NO_PUNCH)
    wait_registered(a, b)
    befriend(a, b, alias="b")
    sent = b.cli("msg", "send", "--to", a.node_id, "--wait", "--timeout", "20", "hello a")
    assert sent["status"] == "delivered" and sent["path"] == "relay", sent
    sent = a.cli("msg", "send", "--to", b.node_id, "--wait", "--timeout", "20", "hello b")
    assert sent["status"] == "delivered" and sent["path"] == "relay", sent
    assert bodies(a) == ["hello a"] and bodies(b) == ["hello b"]

    status = a.cli("node", "status")
    relay = next(t for t in status["transports"] if t["name"] == "relay")
    assert relay["state"] == "connected"
    assert relay["hosts"][0]["url"] == host.url and relay["hosts"][0]["registered_since_ms"]
    # The host's structured log names the node and the stream the node reports.
    lines = [json.loads(line) for line in host.log().splitlines() if line.startswith("{")]
    assert any(
        line.get("node_id") == a.node_id and line.get("connection_id") == relay["hosts"][0]["connection_id"]
        for line in lines
    )

    text = urllib.request.urlopen(f"http://{host.metrics}/metrics", timeout=5).read().decode()
    assert metric(text, 'tmax_host_registrations_total{result="ok"}') >= 2
    assert metric(text, "tmax_host_relayed_total") >= 3  # hello + two messages
    assert metric(text, 'tmax_host_frames_in_total{type="ack_send"}') >= 3
    assert metric(text, "tmax_host_registered_nodes") == 2


def test_store_and_forward_50_exactly_once(procs: ProcGroup) -> None:
    host = procs.host()
    a = procs.node("a", "--relay", host.url, env=BULK)
    b = procs.node("b", "--relay", host.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    b.stop()
    wanted = [f"m{i:02d}" for i in range(50)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": body.encode()} for body in wanted])
    # Every message handed to the host (stored for B), then A goes offline too.
    wait_for(lambda: outbox(a).get("sent") == 50, what="50 messages stored at the host")
    a.stop()
    b.start()
    wait_for(lambda: len(bodies(b)) >= 50, what="b to receive the stored messages")
    assert bodies(b) == wanted
    # A comes back: its re-sends are answered "duplicate" and nothing lands twice.
    a.start()
    wait_for(lambda: outbox(a).get("delivered") == 50, what="a to learn all were delivered")
    assert bodies(b) == wanted


def test_host_killed_and_restarted_mid_traffic(procs: ProcGroup) -> None:
    host = procs.host()
    a = procs.node("a", "--relay", host.url, env=BULK)
    b = procs.node("b", "--relay", host.url, env=BULK)
    wait_registered(a, b)
    befriend(a, b)
    wanted = [f"t{i:02d}" for i in range(30)]
    with api(a) as c:
        c.msg_send_many([{"to": b.node_id, "body": x.encode()} for x in wanted[:15]])
        host.restart_same_port()  # SIGKILL: stored and in-flight frames at the host are gone
        c.msg_send_many([{"to": b.node_id, "body": x.encode()} for x in wanted[15:]])
    wait_registered(a, b)  # they reconnect by themselves
    wait_for(lambda: outbox(a).get("delivered") == 30, timeout=30, what="all delivered")
    assert bodies(b) == wanted


# -- TLS --------------------------------------------------------------------------------------


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, issuer_key: Any, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_ca(folder: Path, name: str) -> tuple[Path, x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(f"{name} test CA", key, None, None, ca=True)
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert.subject, key


def make_server_cert(folder: Path, issuer: x509.Name, issuer_key: Any) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("tmax-host", key, issuer, issuer_key, ca=False)
    cert_path, key_path = folder / "host.pem", folder / "host.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_and_wrong_ca(procs: ProcGroup, tmp_path: Path) -> None:
    good_ca, issuer, issuer_key = make_ca(tmp_path, "good")
    wrong_ca, _, _ = make_ca(tmp_path, "wrong")
    cert, key = make_server_cert(tmp_path, issuer, issuer_key)
    host = procs.host("host", "--tls-cert", str(cert), "--tls-key", str(key))
    assert host.url.startswith("grpcs://")
    a = procs.node("a", "--relay", host.url, env={**FAST, "TMAX_MESH_RELAY_CA_FILE": str(good_ca)})
    b = procs.node("b", "--relay", host.url, env={**FAST, "TMAX_MESH_RELAY_CA_FILE": str(wrong_ca)})
    wait_registered(a)

    # B does not trust the host's certificate: a clear error in its status...
    def b_error() -> str | None:
        return relay_status(b)["hosts"][0]["last_error"]

    error = wait_for(b_error, what="b's TLS error")
    assert re.search(r"certificate|handshake|SSL", error, re.IGNORECASE), error
    assert relay_status(b)["state"] != "connected"
    # ...and what it sends meanwhile is kept, not lost.
    with api(a) as c:
        token = c.invite_create()["token"]
    with api(b) as c:
        c.invite_accept(token)
        message_id = c.msg_send(a.node_id, b"over tls")["message_id"]
        assert c.msg_status(message_id)["status"] == "queued"
    # The right CA is configured: the queued message goes through, once.
    b.stop()
    b.env = {**FAST, "TMAX_MESH_RELAY_CA_FILE": str(good_ca)}
    b.start()
    wait_registered(b)
    with api(b) as c:
        assert c.msg_wait(message_id, 20)["status"] == "delivered"
    assert bodies(a) == ["over tls"]


# -- the tmax-mesh alias -----------------------------------------------------------------------


def test_tmax_mesh_host_run_alias(procs: ProcGroup, tmp_path: Path) -> None:
    proc = procs.add(
        Proc(
            [script("tmax-mesh"), "host", "run", "--listen", "127.0.0.1:0"],
            tmp_path / "alias.ready.json",
            tmp_path / "alias.log",
        )
    ).start()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", proc.ready["listen"]) and proc.ready["metrics"] is None
    a = procs.node("a", "--relay", f"grpc://{proc.ready['listen']}")
    wait_registered(a)
    assert proc.stop() == 0  # SIGTERM: graceful


# -- attacks (issue 13) ------------------------------------------------------------------------

REPLAY_RELAY = Path(__file__).with_name("replay_relay.py")


def test_relay_replays_registration_on_another_relay(procs: ProcGroup, tmp_path: Path) -> None:
    """A malicious relay forwards an honest host's challenge to a node that dialed
    it and replays the node's signed Register on the honest host."""
    honest = procs.host("honest")
    result = tmp_path / "replay.json"
    evil = procs.add(
        Proc(
            [sys.executable, str(REPLAY_RELAY), "--target", honest.listen, "--result", str(result)],
            tmp_path / "evil.ready.json",
            tmp_path / "evil.log",
        )
    ).start()
    node = procs.node("victim", "--relay", f"grpc://{evil.ready['listen']}", env=FAST)
    outcome = wait_for(
        lambda: result.exists() and json.loads(result.read_text()), what="the replayed registration's answer"
    )
    assert outcome["node_id"] == node.node_id, outcome
    assert outcome["answer"] != "registered", (
        "the honest host accepted a registration the node signed for another relay"
    )
    assert outcome["answer"] == "error:wrong_url", outcome


def test_node_shows_a_host_that_answers_to_another_url(procs: ProcGroup) -> None:
    host = procs.host("host", "--public-url", "grpc://relay.test:7447")
    node = procs.node("a", "--relay", host.url, env=FAST)
    error = wait_for(lambda: relay_status(node)["hosts"][0]["last_error"], what="the refusal in node status")
    assert "wrong_url" in error and "grpc://relay.test:7447" in error, error
    assert relay_status(node)["state"] != "connected"


def test_first_contact_to_an_offline_inviter_arrives_when_it_is_back(procs: ProcGroup) -> None:
    """The host stores only for friends, so it keeps nothing for an inviter from a
    node it does not know yet; the invitee's outbox tries again until it is back."""
    host = procs.host()
    a = procs.node("a", "--relay", host.url, env=FAST)
    b = procs.node("b", "--relay", host.url, env=FAST)
    wait_registered(a, b)
    token = a.invite()
    a.stop()
    b.cli("invite", "accept", token, "--alias", "a")
    with api(b) as c:
        message_id = c.msg_send(a.node_id, b"while you were away")["message_id"]
    a.start()
    with api(b) as c:
        assert c.msg_wait(message_id, 60)["status"] == "delivered"
    assert bodies(a) == ["while you were away"]
