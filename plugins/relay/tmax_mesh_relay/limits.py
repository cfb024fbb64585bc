"""Every bound of ``tmax-host`` (:class:`HostLimits`), in one place: the hub, its
connections and the host's options read them from here."""

from __future__ import annotations

from dataclasses import dataclass, field

from tmax_mesh_relay import wire
from tmax_mesh_relay.proto import host_pb2
from tmax_mesh_relay.storeforward import QueueLimits


@dataclass(frozen=True)
class HostLimits:
    """Every bound of the host. The defaults here are the only ones: tmax-host's
    options (``host._declare``, docs/relay.md) take theirs from this class."""

    max_connections: int = 10_000
    max_connections_per_ip: int = 64
    register_rate_per_s: float = 10.0
    register_burst: int = 64
    max_frame_bytes: int = 1024 * 1024 + 64 * 1024
    max_batch: int = 1024
    """Envelopes in one RelaySendBatch (their bytes together at most ``max_frame_bytes``)."""
    rate_per_s: float = 100.0
    burst: int = 200
    lookup_rate_per_s: float = 2.0
    lookup_burst: int = 10
    register_timeout_s: float = 10.0
    idle_timeout_s: float = 0.0
    write_timeout_s: float = 5.0
    max_lookup_allow: int = wire.DEFAULT_MAX_LOOKUP_ALLOW
    remembered_allow_bytes: int = 64 * 1024 * 1024
    queue: QueueLimits = field(default_factory=QueueLimits)

    def to_pb(self) -> host_pb2.Limits:
        return host_pb2.Limits(
            max_frame_bytes=self.max_frame_bytes,
            rate_per_s=self.rate_per_s,
            burst=self.burst,
            queue_max_messages=self.queue.max_messages,
            queue_max_bytes=self.queue.max_bytes,
            queue_ttl_ms=int(self.queue.ttl_s * 1000),
            idle_timeout_ms=int(self.idle_timeout_s * 1000),
            max_lookup_allow=self.max_lookup_allow,
        )
