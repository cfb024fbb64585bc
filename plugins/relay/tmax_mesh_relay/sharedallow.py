"""Allow lists shared by the members of a relay cluster (DESIGN §15), so every
member applies the same ones: an envelope for an offline node is held for its
friends whichever member the node was registered on.

Members pack allow lists with one fingerprint key (:mod:`allowlists`), made
by the first member and kept in the ``tmax_cluster`` KV bucket: it stays as
secret as before (it never leaves the relays and NATS), and a packed list
means the same on every member. When a node's last stream on a member ends,
that member writes the node's packed list to the ``tmax_allow`` bucket, whose
entries expire after the queue TTL (past it nothing held for the node
survives anyway); a member holding an envelope for a node it does not
remember reads the list there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import nats.errors
import nats.js.errors

from tmax_mesh_relay import allowlists
from tmax_mesh_relay.members import open_bucket

log = logging.getLogger("tmax_mesh.host")

KEY_BUCKET = "tmax_cluster"
FINGERPRINT_KEY = "fingerprint-key"
ALLOW_BUCKET = "tmax_allow"
KEY_BUCKET_BYTES = 1024 * 1024
KEY_VALUE_SIZE = 1024
"""Bounds of the bucket holding the fingerprint key (16 bytes)."""
VALUE_OVERHEAD = 256
"""Room beside a packed allow list in one KV message (an empty list too gets a positive bound)."""


async def fingerprint_key(nc: Any, replicas: int = 1) -> bytes:
    """The cluster's fingerprint key (created by the first member to ask)."""
    kv = await open_bucket(
        nc, KEY_BUCKET, replicas, max_bytes=KEY_BUCKET_BYTES, max_value_size=KEY_VALUE_SIZE
    )
    with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):  # another member made it first
        await kv.create(FINGERPRINT_KEY, os.urandom(16))
    return (await kv.get(FINGERPRINT_KEY)).value


class SharedAllowLists:
    """Offline nodes' packed allow lists, by node id; NATS failures are counted, never raised."""

    def __init__(self, kv: Any, errors: dict[str, int]) -> None:
        self.kv = kv
        self.errors = errors

    @classmethod
    async def open(
        cls,
        nc: Any,
        ttl_s: float,
        max_bytes: int,
        max_list: int,
        errors: dict[str, int],
        replicas: int = 1,
    ) -> SharedAllowLists:
        """Bind the bucket, bounded like the allow lists one host remembers: ``max_bytes``
        in all (a full bucket refuses new lists, counted as ``kv`` errors), packed
        lists of at most ``max_list`` node ids."""
        kv = await open_bucket(
            nc,
            ALLOW_BUCKET,
            replicas,
            ttl_s,
            max_bytes=max_bytes,
            max_value_size=max_list * allowlists.FINGERPRINT_LEN + VALUE_OVERHEAD,
        )
        return cls(kv, errors)

    async def put(self, node_id: bytes, packed: bytes) -> None:
        try:
            await self.kv.put(node_id.hex(), packed)
        except (TimeoutError, nats.errors.Error) as err:
            self.errors["kv"] += 1
            log.info("cluster: sharing an allow list failed: %s", err)

    async def get(self, node_id: bytes) -> bytes | None:
        try:
            entry = await self.kv.get(node_id.hex())
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as err:
            self.errors["kv"] += 1
            log.info("cluster: reading an allow list failed: %s", err)
            return None
        return entry.value
