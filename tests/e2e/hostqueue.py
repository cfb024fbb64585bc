"""A real ``tmax-host``'s write queue to a node that does not read, as its
Prometheus metrics show it: tests wait for the state an attack needs instead
of sleeping until it has probably been reached.

The tests relay envelopes of :data:`FILLING_BODY` bytes from one sender to one
recipient. Each ``RelaySend`` is counted when the host reads it, and its
``Deliver`` when the write to the recipient succeeds, so the difference is how
many the host holds unwritten: one in a write that blocks (gRPC's buffers
toward the recipient are full), one queued (a ``Deliver`` this big fills the
stream's queue: ``max_frame_bytes``), and one more means the sender's read loop
is waiting for room on that queue.
"""

from __future__ import annotations

import asyncio

from tests.harness import Host
from tests.metrics import host_metrics, samples
from tmax_mesh_relay.limits import HostLimits

FILLING_BODY = HostLimits().max_frame_bytes - 300
"""An envelope body whose ``Deliver`` frame alone fills a stream's write queue."""

RELAY_SENDS = 'tmax_host_frames_in_total{type="relay_send"}'
ACK_SENDS = 'tmax_host_frames_in_total{type="ack_send"}'
DELIVERS = 'tmax_host_frames_out_total{type="deliver"}'


async def scrape(host: Host) -> dict[str, float]:
    """The host's samples by name (with labels), read off the event loop's thread."""
    return samples(await asyncio.to_thread(host_metrics, host))


def sender_waits_for_room(samples: dict[str, float]) -> bool:
    """Whether the sender's read loop waits for room on the recipient's full queue
    (three envelopes read and not written: see the module's docstring)."""
    return samples.get(RELAY_SENDS, 0.0) - samples.get(DELIVERS, 0.0) >= 3
