"""Prometheus metrics of ``tmax-node`` (``--metrics-listen``), read from
:meth:`Node.status` at scrape time: the node's counters, its outbox, and its
transports' own ``status()`` (relay links included, without importing the
relay plugin).

A scrape runs on the exporter's thread; the snapshot is taken on the node's
event loop (``run_coroutine_threadsafe``), where the node's state lives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tmax_core.node import Node

SCRAPE_TIMEOUT_S = 10.0
UP_STATES = ("connected", "ready")


class NodeMetrics(Collector):
    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.loop = loop
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def snapshot(self) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self.node.status(), self.loop).result(SCRAPE_TIMEOUT_S)

    def collect(self) -> Iterator[Metric]:
        return families(self.snapshot())


def families(status: dict[str, Any]) -> Iterator[Metric]:
    """The metric families of one :meth:`Node.status` snapshot."""
    counters: dict[str, int] = status["counters"]
    inbound = CounterMetricFamily(
        "tmax_node_messages_in",
        "messages accepted from friends, by the transport they came by",
        labels=["path"],
    )
    outbound = CounterMetricFamily(
        "tmax_node_messages_out",
        "outcomes of sent messages (delivered, failed, ...), by path ('-': none)",
        labels=["path", "status"],
    )
    rejected = CounterMetricFamily(
        "tmax_node_ingress_rejections", "inbound envelopes refused, by reason", labels=["reason"]
    )
    for key, value in counters.items():
        kind, _, rest = key.partition(":")
        if kind == "in":
            inbound.add_metric([rest], value)
        elif kind == "send":
            outcome, _, path = rest.partition(":")
            outbound.add_metric([path, outcome], value)
        elif kind == "rejected":
            rejected.add_metric([rest], value)
    yield from (inbound, outbound, rejected)

    outbox = GaugeMetricFamily(
        "tmax_node_outbox_messages", "messages in the outbox, by status", labels=["status"]
    )
    for name, count in status["outbox"].items():
        outbox.add_metric([name], count)
    yield outbox
    yield GaugeMetricFamily(
        "tmax_node_inbox_unread", "unread messages in the inbox", value=status["inbox_unread"]
    )
    yield GaugeMetricFamily("tmax_node_friends", "friends", value=status["friends"])

    transport_up = GaugeMetricFamily(
        "tmax_node_transport_up", "1 if the transport is connected or ready", labels=["transport", "state"]
    )
    links = GaugeMetricFamily(
        "tmax_node_relay_link_up", "1 if the node is registered on this relay host", labels=["url", "state"]
    )
    for t in status["transports"]:
        transport_up.add_metric([t["name"], t["state"]], float(t["state"] in UP_STATES))
        for host in t.get("hosts", ()):  # the relay transport's links, from its status()
            if isinstance(host, dict) and "url" in host:
                links.add_metric(
                    [host["url"], str(host.get("state"))], float(host.get("state") == "connected")
                )
    yield from (transport_up, links)
