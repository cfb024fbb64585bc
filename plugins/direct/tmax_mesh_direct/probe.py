"""The signed-nonce probe, shared by dialed endpoints and punched connections.

A probe is an empty batch with a fresh nonce: the node that answers signs a
batch ack that echoes the nonce, so a probe proves who answers on a
connection now (not just that some PeerService does), and a recorded answer
replayed by someone else is refused.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tmax_core import envelope as env

if TYPE_CHECKING:
    from tmax_core.model import Friend

PROBE_NONCE_LEN = 16
MAX_PROBE_ACK_BYTES = 4096  # a signed ack of an empty batch is about 150 bytes


def new_nonce() -> bytes:
    return os.urandom(PROBE_NONCE_LEN)


def verify_probe_answer(answer: bytes, friend: Friend, nonce: bytes) -> None:
    """Raise :class:`tmax_core.errors.EnvelopeError` unless ``answer`` is
    ``friend``'s signed ack of the empty batch with ``nonce``."""
    env.verify_ack_batch(
        answer,
        expected_signer_public_key=friend.public_key,
        expected_signer_node_id=friend.node_id,
        sender_node_id=b"",  # an empty batch names no sender
        max_bytes=MAX_PROBE_ACK_BYTES,
        nonce=nonce,
    )
