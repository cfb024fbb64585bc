"""A process's Prometheus metrics as the tests read them, with prometheus_client's parser."""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from tests.harness import Host


def fetch(listen: str) -> str:
    """The exposition text at ``http://LISTEN/metrics``."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as resp:
        return resp.read().decode()


def samples(text: str) -> dict[str, float]:
    """Every sample by name and labels, the labels sorted by name: ``name`` or
    ``name{a="x",b="y"}``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


def metric(text: str, sample: str) -> float:
    """One sample's value (0.0 when absent: a labelled counter not yet counted)."""
    return samples(text).get(sample, 0.0)


def host_metrics(host: Host) -> str:
    """A host's exposition text (it runs with ``--metrics-listen``)."""
    return fetch(host.metrics)
