import os
import subprocess
import sys

import coincurve
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tmax_core import clock, crypto
from tmax_core.crypto import Domain
from tmax_core.errors import UsageError


def test_keccak_known_vector():
    assert crypto.keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_address_known_vector():
    # Private key 1 -> well-known Ethereum address.
    pk = coincurve.PrivateKey.from_int(1)
    want = "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
    assert crypto.address_from_public_key(pk.public_key.format(compressed=True)).hex() == want
    assert crypto.address_from_public_key(pk.public_key.format(compressed=False)).hex() == want


@pytest.mark.parametrize(
    "bad", [b"", b"\x02" + b"\xff" * 32, b"\x05" + b"\x00" * 32, b"\x04" + b"\x01" * 64, b"x" * 20]
)
def test_address_rejects_invalid_keys(bad):
    with pytest.raises(ValueError):
        crypto.address_from_public_key(bad)


# The test vectors of EIP-55: mixed case, then all caps and all lower.
EIP55_VECTORS = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
]


@pytest.mark.parametrize("addr", EIP55_VECTORS)
def test_checksum_eip55_vectors(addr):
    assert crypto.to_checksum(bytes.fromhex(addr[2:])) == addr


@pytest.mark.parametrize("bad", [b"", b"\x01" * 19, b"\x01" * 21])
def test_checksum_rejects_wrong_length(bad):
    with pytest.raises(ValueError, match="20 bytes"):
        crypto.to_checksum(bad)


def _hash_backend_in_child(env: dict[str, str]) -> str:
    """The backend setting and the eth-hash backend eth-keys would use, in a
    fresh interpreter that imported tmax_core.crypto."""
    code = (
        "import os, tmax_core.crypto\n"
        "from eth_hash.utils import auto_choose_backend\n"
        "print(os.environ['ETH_HASH_BACKEND'], type(auto_choose_backend()).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_eth_keys_hashes_with_pysha3():
    # Pinned, not left to eth-hash's auto choice: that prefers pycryptodome when installed.
    env = {k: v for k, v in os.environ.items() if k != crypto.HASH_BACKEND_ENV}
    assert _hash_backend_in_child(env) == "pysha3 PySha3Backend"


def test_hash_backend_chosen_by_the_user_is_kept():
    env = {**os.environ, crypto.HASH_BACKEND_ENV: "not-a-backend"}
    with pytest.raises(subprocess.CalledProcessError) as err:
        _hash_backend_in_child(env)
    assert "not-a-backend" in err.value.stderr


def test_parse_node_id_any_case():
    addr = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    raw = bytes.fromhex(addr[2:])
    assert crypto.parse_node_id(addr) == raw
    assert crypto.parse_node_id(addr.lower()) == raw
    assert crypto.parse_node_id("0X" + addr[2:].upper()) == raw
    assert crypto.looks_like_node_id(addr)


@pytest.mark.parametrize(
    "bad",
    ["", "0x", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x" + "g" * 40, "0x" + "a" * 39, "0x" + "a" * 42],
)
def test_parse_node_id_rejects(bad):
    assert not crypto.looks_like_node_id(bad)
    with pytest.raises(UsageError):
        crypto.parse_node_id(bad)


def test_signing_digest_is_length_prefixed():
    assert crypto.signing_digest(b"d", b"ab", b"c") != crypto.signing_digest(b"d", b"a", b"bc")
    assert crypto.signing_digest(Domain.INVITE, b"x") != crypto.signing_digest(Domain.ENVELOPE, b"x")


def test_sign_recover_verify():
    key = coincurve.PrivateKey()
    pub = key.public_key.format(compressed=True)
    sig = crypto.sign(key, Domain.ACK, b"hello", b"world")
    assert len(sig) == 65
    assert crypto.recover_public_key(sig, Domain.ACK, b"hello", b"world") == pub
    assert crypto.verify(sig, pub, Domain.ACK, b"hello", b"world")
    assert crypto.verify(sig, key.public_key.format(compressed=False), Domain.ACK, b"hello", b"world")
    assert not crypto.verify(sig, pub, Domain.ENVELOPE, b"hello", b"world")
    assert not crypto.verify(sig, pub, Domain.ACK, b"hello", b"worle")
    other = coincurve.PrivateKey().public_key.format()
    assert not crypto.verify(sig, other, Domain.ACK, b"hello", b"world")


@pytest.mark.parametrize("sig", [b"", b"\x00" * 64, b"\x00" * 65, b"\xff" * 65, b"\x00" * 66])
def test_recover_and_verify_bad_signatures(sig):
    with pytest.raises(ValueError):
        crypto.recover_public_key(sig, Domain.ACK, b"x")
    assert crypto.verify(sig, b"\x02" * 33, Domain.ACK, b"x") is False
    assert crypto.verify(sig, b"", Domain.ACK, b"x") is False


def test_ecdh_symmetric():
    a, b = coincurve.PrivateKey(), coincurve.PrivateKey()
    assert crypto.ecdh(a, b.public_key.format()) == crypto.ecdh(b, a.public_key.format())


@pytest.mark.parametrize("length", [16, 32, 64, 100])
def test_hkdf_matches_cryptography(length):
    ref = HKDF(hashes.SHA256(), length, b"salt", b"info").derive(b"input key")
    assert crypto.hkdf_sha256(b"input key", salt=b"salt", info=b"info", length=length) == ref
    ref0 = HKDF(hashes.SHA256(), length, None, b"info").derive(b"input key")
    assert crypto.hkdf_sha256(b"input key", salt=b"", info=b"info", length=length) == ref0


def test_now_ms():
    assert clock.now_ms() > 1_600_000_000_000
