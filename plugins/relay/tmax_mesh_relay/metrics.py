"""Prometheus metrics of ``tmax-host`` (own registry, so tests and embedders
can run several hosts in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

NODE_FRAMES = ("register", "relay_send", "ack_send", "ping", "pong", "lookup", "set_lookup_allow")
HOST_FRAMES = (
    "challenge",
    "registered",
    "deliver",
    "queued",
    "ack",
    "ping",
    "pong",
    "lookup_result",
    "error",
)


class HostMetrics:
    def __init__(
        self,
        *,
        connections: Callable[[], float],
        registered: Callable[[], float],
        queue_messages: Callable[[], float],
        queue_bytes: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("tmax_host_connections", "open Connect streams", registry=r).set_function(connections)
        Gauge("tmax_host_registered_nodes", "nodes with a registered stream", registry=r).set_function(
            registered
        )
        Gauge("tmax_host_queue_messages", "envelopes held for offline nodes", registry=r).set_function(
            queue_messages
        )
        Gauge("tmax_host_queue_bytes", "bytes held for offline nodes", registry=r).set_function(queue_bytes)
        self.registrations = Counter(
            "tmax_host_registrations", "registration attempts by result", ["result"], registry=r
        )
        frames_in = Counter("tmax_host_frames_in", "frames received from nodes", ["type"], registry=r)
        frames_out = Counter("tmax_host_frames_out", "frames sent to nodes", ["type"], registry=r)
        # Label children resolved once: .labels() costs a lock and a dict lookup per call.
        self.frames_in = {t: frames_in.labels(t) for t in NODE_FRAMES}
        self.frames_out = {t: frames_out.labels(t) for t in HOST_FRAMES}
        self.bytes_in = Counter("tmax_host_bytes_in", "envelope and ack bytes received", registry=r)
        self.bytes_out = Counter("tmax_host_bytes_out", "envelope and ack bytes sent", registry=r)
        self.drops = Counter(
            "tmax_host_drops", "frames or connections refused, by reason", ["reason"], registry=r
        )
        self.relayed = Counter("tmax_host_relayed", "envelopes forwarded to an online node", registry=r)
        self.queued = Counter("tmax_host_queued", "envelopes stored for an offline node", registry=r)
        self.flushed = Counter(
            "tmax_host_queue_delivered", "stored envelopes delivered on registration", registry=r
        )
        self.throttled = Counter(
            "tmax_host_throttled", "frames delayed by the per-connection rate limit", registry=r
        )
        self.lookups = Counter("tmax_host_lookups", "lookups by result", ["result"], registry=r)

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops.labels(reason).inc(n)
