"""Store-and-forward of a relay cluster in JetStream (DESIGN §15).

One stream, ``TMAX_HELD``, one subject per recipient (``tmax.held.<id>``), each
message the ``HostFrame{deliver}`` to write to the recipient:

- per-subject limits are the per-recipient cap (``--queue-max-messages``),
  with ``discard new`` per subject so a full queue refuses the newest envelope
  (``queue_full``) instead of silently dropping an older one;
- ``max_age`` is the queue TTL and ``max_bytes`` the total cap.

A held envelope leaves the stream only when its recipient acknowledges it, so
it survives the crash of any member (and, with replicas, of a NATS server) and
is drained by whichever member the recipient registers on next. Per-sender
fairness and per-recipient byte caps of the in-process store have no JetStream
equivalent: they do not apply to a cluster.
"""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.storeforward import QueueLimits

log = logging.getLogger("tmax_mesh.host")

STREAM = "TMAX_HELD"
PREFIX = "tmax.held."
FRAME_OVERHEAD = 1024
"""Bytes a held frame may need beyond the largest envelope (frame fields, ids)."""
PER_SUBJECT_FULL = 10077
"""JetStream's error code for a subject at its message limit with ``discard new``."""


def held_subject(node_id: bytes) -> str:
    return f"{PREFIX}{node_id.hex()}"


def stream_config(limits: QueueLimits, max_frame_bytes: int, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        description="tmax-host: envelopes held for offline nodes",
        subjects=[f"{PREFIX}*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=limits.max_messages,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=limits.ttl_s,
        max_bytes=limits.total_bytes,
        max_msg_size=max_frame_bytes + FRAME_OVERHEAD,
        num_replicas=replicas,
    )


class HeldStream:
    """The cluster's held envelopes; NATS failures are reported, never raised."""

    def __init__(self, js: Any, errors: dict[str, int]) -> None:
        self.js = js
        self.errors = errors

    @classmethod
    async def open(cls, nc: Any, config: StreamConfig, errors: dict[str, int]) -> HeldStream:
        """Bind the stream, creating it if no member has yet (an existing one keeps its config)."""
        js = nc.jetstream()
        try:
            await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
        return cls(js, errors)

    async def put(self, to: bytes, frame: host_pb2.HostFrame) -> str | None:
        """Hold ``frame`` for ``to``: None, ``queue_full``, or ``unavailable`` (not held)."""
        # No Nats-Msg-Id de-duplication: a sender's retry after the recipient
        # acknowledged (and the ack was lost) must be held again, or it would
        # never be acknowledged; the recipient drops what it already has.
        try:
            await self.js.publish(held_subject(to), frame.SerializeToString(), stream=STREAM)
        except nats.js.errors.APIError as err:
            if err.err_code == PER_SUBJECT_FULL:
                return "queue_full"
            self.errors["jetstream"] += 1
            log.info("cluster: holding an envelope failed: %s", err)
            return "unavailable"
        except (TimeoutError, nats.errors.Error) as err:
            self.errors["jetstream"] += 1
            log.info("cluster: holding an envelope failed: %s", err)
            return "unavailable"
        return None

    async def next(self, node_id: bytes, seq: int) -> tuple[int, host_pb2.HostFrame] | None:
        """The first envelope held for ``node_id`` at or after ``seq`` (None: no more, or NATS failed)."""
        while True:
            try:
                msg = await self.js.get_msg(STREAM, seq=seq, subject=held_subject(node_id), next=True)
            except nats.js.errors.NotFoundError:
                return None
            except (TimeoutError, nats.errors.Error) as err:
                self.errors["jetstream"] += 1
                log.info("cluster: reading held envelopes failed: %s", err)
                return None
            try:
                frame = host_pb2.HostFrame.FromString(msg.data or b"")
            except DecodeError:
                frame = None
            if frame is not None and frame.WhichOneof("frame") == "deliver":
                return msg.seq, frame
            self.errors["malformed"] += 1
            seq = msg.seq + 1

    async def remove(self, seq: int) -> None:
        """Drop a delivered envelope (already gone, e.g. expired, is fine)."""
        try:
            await self.js.delete_msg(STREAM, seq)
        except nats.js.errors.NotFoundError:
            pass
        except (TimeoutError, nats.errors.Error) as err:
            self.errors["jetstream"] += 1
            log.info("cluster: removing a delivered envelope failed: %s", err)
