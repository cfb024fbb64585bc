"""Coverage-guided fuzzing (atheris, libFuzzer) of the invite and envelope
parsers. Not part of CI: run it by hand for a longer campaign.

    pip install atheris
    python tests/fuzz/atheris_parsers.py invite   -atheris_runs=200000
    python tests/fuzz/atheris_parsers.py envelope -atheris_runs=200000
    python tests/fuzz/atheris_parsers.py invite   -max_total_time=300 CORPUS_DIR

Any exception other than the parser's own error (InviteError/EnvelopeError
with a documented code) is a crash: libFuzzer stops and writes the input to
``crash-*``. A run that ends by itself prints ``Done N runs``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from tmax_core import envelope as env
    from tmax_core import invites
    from tmax_core.errors import EnvelopeError, InviteError, InviteReason, Reason
    from tmax_core.identity import NodeIdentity

INVITE_CODES = {v for k, v in vars(InviteReason).items() if k.isupper()}
ENVELOPE_CODES = {v for k, v in vars(Reason).items() if k.isupper()}
RECIPIENT = NodeIdentity.generate()
SENDER = NodeIdentity.generate()
SEED_INVITE = invites.create_invite(SENDER, ttl_ms=3_600_000, relay_hosts=["grpc://relay.example:7447"])
SEED_ENVELOPE = env.seal(
    SENDER,
    to_node_id=RECIPIENT.node_id,
    to_public_key=RECIPIENT.public_key,
    scope="message",
    content_type="text/plain",
    body=b"seed",
    invite=SEED_INVITE.raw,
)


def fuzz_invite(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        if mode == 0:
            invites.decode_invite(rest.decode("utf-8", "replace"))
        elif mode == 1:
            invites.decode_invite(invites.encode_token(rest))
        else:
            got = invites.decode_signed_invite(rest)
            assert got.raw == rest
    except InviteError as err:
        if err.code not in INVITE_CODES:
            raise AssertionError(f"undocumented invite error code {err.code!r}") from None


def fuzz_envelope(data: bytes) -> None:
    try:
        parsed = env.parse(data, 1 << 20)
        env.verify(parsed)
        env.open_content(RECIPIENT, parsed)
    except EnvelopeError as err:
        if err.code not in ENVELOPE_CODES:
            raise AssertionError(f"undocumented envelope error code {err.code!r}") from None


TARGETS = {"invite": (fuzz_invite, b"\x01" + SEED_INVITE.raw), "envelope": (fuzz_envelope, SEED_ENVELOPE)}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags] [CORPUS_DIR]")
    target, seed = TARGETS[sys.argv.pop(1)]
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for folder in corpus:  # start from a real token / envelope, so mutations reach the deep checks
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "seed").write_bytes(seed)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
