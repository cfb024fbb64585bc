import json
import os
import stat
from pathlib import Path

import pytest

from tmax_core import crypto, identity
from tmax_core.errors import KeystoreError
from tmax_core.identity import NodeIdentity


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generate_and_sign():
    ident = NodeIdentity.generate()
    assert len(ident.public_key) == 33 and len(ident.node_id) == 20
    assert ident.node_id == crypto.address_from_public_key(ident.public_key)
    assert crypto.parse_node_id(ident.node_id_hex) == ident.node_id
    sig = ident.sign(crypto.Domain.ACK, b"x")
    assert crypto.verify(sig, ident.public_key, crypto.Domain.ACK, b"x")
    assert "private_key" not in repr(ident)


FIXTURE_KEYSTORE = Path(__file__).parent.parent / "fixtures" / "keystore_v1"


def test_keystore_written_before_eth_keys_still_loads():
    """A node.key written by 0.1.0 (hand-rolled address code) unlocks with its
    recovery key; its secret is the well-known web3 documentation key."""
    ident = identity.load(FIXTURE_KEYSTORE)
    assert ident.node_id_hex == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    secret = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    assert ident.private_key.secret.hex() == secret
    assert ident.created_at_ms == 1_700_000_000_000


def test_create_then_restart_loads_same(tmp_path):
    a = identity.load_or_create(tmp_path)
    assert _mode(tmp_path / "node.key") == 0o600
    assert _mode(tmp_path / "recovery.key") == 0o600
    assert len((tmp_path / "recovery.key").read_bytes()) == 32
    b = identity.load_or_create(tmp_path)
    c = identity.load(tmp_path)
    assert a.node_id == b.node_id == c.node_id
    assert a.public_key == b.public_key
    assert a.private_key.secret == b.private_key.secret
    assert a.created_at_ms == b.created_at_ms
    doc = json.loads((tmp_path / "node.key").read_text())
    assert doc["version"] == 1
    assert doc["address"] == a.node_id_hex
    assert doc["kdf"] == "hkdf-sha256" and doc["cipher"] == "chacha20-poly1305"
    assert a.private_key.secret.hex() not in (tmp_path / "node.key").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_creates_state_dir(tmp_path):
    d = tmp_path / "a" / "b"
    ident = identity.load_or_create(d)
    assert identity.load(d).node_id == ident.node_id


def test_custom_recovery_key_path(tmp_path):
    rk = tmp_path / "elsewhere" / "rk.bin"
    state = tmp_path / "state"
    a = identity.load_or_create(state, rk)
    assert rk.exists() and not (state / "recovery.key").exists()
    assert identity.load_or_create(state, rk).node_id == a.node_id
    with pytest.raises(KeystoreError, match=r"recovery\.key"):
        identity.load(state)


def test_existing_recovery_key_used_when_node_key_missing(tmp_path):
    rk = tmp_path / "recovery.key"
    rk.write_bytes(os.urandom(32))
    before = rk.read_bytes()
    ident = identity.load_or_create(tmp_path)
    assert rk.read_bytes() == before
    assert identity.load(tmp_path).node_id == ident.node_id


def test_missing_recovery_key_is_error_and_creates_nothing(tmp_path):
    identity.load_or_create(tmp_path)
    (tmp_path / "recovery.key").unlink()
    key_bytes = (tmp_path / "node.key").read_bytes()
    with pytest.raises(KeystoreError) as exc:
        identity.load_or_create(tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "recovery.key") in msg and "unlock" in msg and "\n" not in msg
    assert not (tmp_path / "recovery.key").exists()
    assert (tmp_path / "node.key").read_bytes() == key_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_wrong_recovery_key(tmp_path):
    identity.load_or_create(tmp_path)
    (tmp_path / "recovery.key").write_bytes(os.urandom(32))
    key_bytes = (tmp_path / "node.key").read_bytes()
    with pytest.raises(KeystoreError) as exc:
        identity.load_or_create(tmp_path)
    assert str(tmp_path / "node.key") in str(exc.value)
    assert "\n" not in str(exc.value)
    assert (tmp_path / "node.key").read_bytes() == key_bytes


def test_recovery_key_wrong_length(tmp_path):
    identity.load_or_create(tmp_path)
    (tmp_path / "recovery.key").write_bytes(b"short")
    with pytest.raises(KeystoreError, match=r"recovery\.key"):
        identity.load(tmp_path)


def _corruptions(data: bytes):
    doc = json.loads(data)
    yield "truncated-half", data[: len(data) // 2]
    yield "truncated-1", data[:-3]
    yield "empty", b""
    yield "not-json", b"\x00\xffgarbage"
    yield "json-list", b"[1, 2]"
    for field, value in [
        ("version", 2),
        ("address", crypto.to_checksum(os.urandom(20))),
        ("public_key", "02" + "11" * 32),
        ("created_at_ms", doc["created_at_ms"] + 1),
        ("salt", "00" * 16),
        ("nonce", "00" * 12),
        ("nonce", "zz"),
        ("kdf", "scrypt"),
        ("created_at_ms", "soon"),
    ]:
        yield f"field-{field}", json.dumps(dict(doc, **{field: value})).encode()
    ct = bytearray(bytes.fromhex(doc["ciphertext"]))
    ct[0] ^= 1
    yield "ciphertext-flip", json.dumps(dict(doc, ciphertext=ct.hex())).encode()
    yield "missing-ciphertext", json.dumps({k: v for k, v in doc.items() if k != "ciphertext"}).encode()


def test_corrupt_node_key_rejected_untouched(tmp_path):
    identity.load_or_create(tmp_path)
    path = tmp_path / "node.key"
    good = path.read_bytes()
    for name, bad in _corruptions(good):
        path.write_bytes(bad)
        with pytest.raises(KeystoreError) as exc:
            identity.load_or_create(tmp_path)
        msg = str(exc.value)
        assert str(path) in msg, name
        assert "\n" not in msg, name
        assert path.read_bytes() == bad, name
        assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key", "recovery.key"], name


def test_load_never_creates(tmp_path):
    with pytest.raises(KeystoreError, match=r"node\.key"):
        identity.load(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_error_is_keystore_error(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(KeystoreError) as exc:
            identity.load_or_create(d)
        assert str(d) in str(exc.value)
    finally:
        d.chmod(0o700)


def test_write_private_file_atomic(tmp_path):
    p = tmp_path / "f"
    identity.write_private_file(p, b"one")
    identity.write_private_file(p, b"two")
    assert p.read_bytes() == b"two"
    assert _mode(p) == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["f"]


def test_unusable_paths_are_keystore_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(KeystoreError) as exc:
        identity.load_or_create(blocker / "state")
    assert str(blocker / "state") in str(exc.value)
    d = tmp_path / "s"
    (d / "node.key").mkdir(parents=True)
    with pytest.raises(KeystoreError) as exc:
        identity.load_or_create(d)
    assert str(d / "node.key") in str(exc.value)
