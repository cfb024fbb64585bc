"""Prometheus metrics of ``tmax-host`` (own registry, so tests and embedders
can run several hosts in one process).

Counters are plain integers bumped by the hub (no lock, no method call: a
``prometheus_client.Counter.inc`` costs about a microsecond and the relay path
bumps five or six per message) and turned into metric families only when
scraped, by :class:`HostMetrics.collect`. The hub runs on one event loop
thread, so plain ``+=`` is safe; a scrape from the exporter's thread reads
values that are at worst one increment old.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

NODE_FRAMES = (
    "register",
    "relay_send",
    "ack_send",
    "ping",
    "pong",
    "lookup",
    "set_lookup_allow",
    "punch_listen",
    "punch_request",
    "relay_send_batch",
    "ack_batch_send",
)
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
    "punch_token",
    "punch_mapped",
    "punch_go",
    "punch_refused",
    "members",
    "deliver_batch",
    "ack_batch",
)


class HostMetrics(Collector):
    """The host's counters as plain attributes, exported at scrape time."""

    def __init__(
        self,
        *,
        connections: Callable[[], float],
        registered: Callable[[], float],
        queue_messages: Callable[[], float],
        queue_bytes: Callable[[], float],
        remembered: Callable[[], float],
    ) -> None:
        self._gauges = (
            ("tmax_host_connections", "open Connect streams", connections),
            ("tmax_host_registered_nodes", "nodes with a registered stream", registered),
            ("tmax_host_queue_messages", "envelopes held for offline nodes", queue_messages),
            ("tmax_host_queue_bytes", "bytes held for offline nodes", queue_bytes),
            (
                "tmax_host_remembered_allow_lists",
                "allow lists of offline nodes kept to gate store-and-forward",
                remembered,
            ),
        )
        # Labelled counters: {label value: count}. Frame types are known up
        # front (exported as 0 before the first frame, as the labelled
        # prometheus Counters did); the others appear on first use.
        self.frames_in: dict[str, int] = dict.fromkeys(NODE_FRAMES, 0)
        self.frames_out: dict[str, int] = dict.fromkeys(HOST_FRAMES, 0)
        self.registrations: defaultdict[str, int] = defaultdict(int)
        self.drops: defaultdict[str, int] = defaultdict(int)
        self.lookups: defaultdict[str, int] = defaultdict(int)
        self.punches: defaultdict[str, int] = defaultdict(int)  # punch requests by outcome
        # Unlabelled counters.
        self.bytes_in = 0
        self.bytes_out = 0
        self.relayed = 0
        self.queued = 0
        self.flushed = 0
        self.throttled = 0
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def collect(self) -> Iterator[Metric]:
        for name, doc, fn in self._gauges:
            yield GaugeMetricFamily(name, doc, value=fn())
        yield labelled(
            "tmax_host_registrations", "registration attempts by result", "result", self.registrations
        )
        yield labelled("tmax_host_frames_in", "frames received from nodes", "type", self.frames_in)
        yield labelled("tmax_host_frames_out", "frames sent to nodes", "type", self.frames_out)
        yield CounterMetricFamily(
            "tmax_host_bytes_in", "envelope and ack bytes received", value=self.bytes_in
        )
        yield CounterMetricFamily("tmax_host_bytes_out", "envelope and ack bytes sent", value=self.bytes_out)
        yield labelled("tmax_host_drops", "frames or connections refused, by reason", "reason", self.drops)
        yield CounterMetricFamily(
            "tmax_host_relayed", "envelopes forwarded to an online node", value=self.relayed
        )
        yield CounterMetricFamily(
            "tmax_host_queued", "envelopes stored for an offline node", value=self.queued
        )
        yield CounterMetricFamily(
            "tmax_host_queue_delivered", "stored envelopes delivered on registration", value=self.flushed
        )
        yield CounterMetricFamily(
            "tmax_host_throttled", "frames delayed by the per-connection rate limit", value=self.throttled
        )
        yield labelled("tmax_host_lookups", "lookups by result", "result", self.lookups)
        yield labelled("tmax_host_punches", "punch requests by outcome", "result", self.punches)


def labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in list(values.items()):
        family.add_metric([value], count)
    return family
