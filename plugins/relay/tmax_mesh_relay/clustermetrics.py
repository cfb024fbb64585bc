"""Prometheus metrics of one cluster member (``tmax-host --cluster``), exported
from the host's registry beside :class:`~tmax_mesh_relay.metrics.HostMetrics`,
with the same plain-integer counters (the hot path pays no method call)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tmax_mesh_relay.metrics import labelled

CLUSTER_FRAMES = ("deliver", "deliver_batch", "ack", "ack_batch", "lookup")


class ClusterMetrics(Collector):
    """Frames to and from other members, NATS connection state and NATS errors."""

    def __init__(self, registry: CollectorRegistry, *, connected: Callable[[], bool]) -> None:
        self._connected = connected
        self.frames_out: dict[str, int] = dict.fromkeys(CLUSTER_FRAMES, 0)
        self.frames_in: dict[str, int] = dict.fromkeys(CLUSTER_FRAMES, 0)
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.disconnects = 0
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "tmax_host_cluster_nats_connected", "1 while connected to NATS", value=int(self._connected())
        )
        yield CounterMetricFamily(
            "tmax_host_cluster_nats_disconnects", "times the NATS connection was lost", value=self.disconnects
        )
        yield labelled(
            "tmax_host_cluster_frames_out", "frames handed to other members", "type", self.frames_out
        )
        yield labelled(
            "tmax_host_cluster_frames_in", "frames other members handed here", "type", self.frames_in
        )
        yield labelled(
            "tmax_host_cluster_errors", "NATS, KV and JetStream failures, by kind", "kind", self.errors
        )
