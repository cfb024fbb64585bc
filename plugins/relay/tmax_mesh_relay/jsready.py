"""Whether a member can set up its JetStream buckets and stream yet (DESIGN §15).

A NATS cluster that has just started answers JetStream requests only once its
servers have elected a meta leader, which takes a quorum of them and a few
seconds. A member started with it (a boot, the 3-server config of
docs/relay.md) waits for that, for up to ``READY_WAIT_S``. A server without
JetStream must fail the member at once instead, yet nats-py reports both as
``ServiceUnavailableError``, so the member asks the JetStream API itself
(``$JS.API.INFO``) and reads the answer:

- no responders: no server offers JetStream (nats-server without ``-js``);
- an error ``JSClusterNotAvailErr`` (10008), or silence: no meta leader yet
  (a server without one says nothing for its first seconds, then 10008);
- another error: JetStream refuses this account (e.g. not enabled for it);
- the account's info: ready.

It asks before the first setup step, and after that only when a step failed
because the cluster is still forming (:data:`FORMING`): such a step is tried
again once JetStream answers; any other failure is final.

A replicated bucket or stream a step has just created answers writes only once
its own replicas have elected a leader; until then a write to it has no
responders (nats-py's ``NoStreamResponseError``), and the step is tried again
too, after the same pause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors

from tmax_mesh_relay.clusterstart import ClusterError

log = logging.getLogger("tmax_mesh.host")

API_INFO = "$JS.API.INFO"
NO_META_LEADER = 10008
"""``JSClusterNotAvailErr``: "JetStream system temporarily unavailable"."""
NO_PEERS = 10005
"""``JSClusterNoPeersErr``: fewer servers up than the replicas asked for."""
WAITING_FOR_LEADER = "no meta leader yet"
FORMING = {
    NO_META_LEADER: WAITING_FOR_LEADER,
    NO_PEERS: "not enough JetStream servers up yet for --cluster-replicas",
}
"""Setup failures of a NATS cluster still forming, and what the member waits for."""
WAITING_FOR_STREAM_LEADER = "a new bucket or stream has no leader yet"
READY_WAIT_S = 30.0
"""How long a member waits for JetStream to become ready before it gives up."""
PROBE_TIMEOUT_S = 1.0
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 1.0

T = TypeVar("T")


async def not_ready_reason(nc: Any, where: str) -> str | None:
    """None when JetStream answers ``nc``'s account, else why it is not ready yet;
    ClusterError when it never will be (no JetStream, or refused for this account)."""
    try:
        msg = await nc.request(API_INFO, b"", timeout=PROBE_TIMEOUT_S)
    except nats.errors.NoRespondersError:
        raise ClusterError(f"NATS at {where} has no usable JetStream (run nats-server with -js)") from None
    except TimeoutError:
        return WAITING_FOR_LEADER
    try:
        error = json.loads(msg.data).get("error") or {}
        code, detail = error.get("err_code"), error.get("description")
    except (ValueError, AttributeError):
        raise ClusterError(f"NATS at {where} answered {API_INFO} with no JetStream answer") from None
    if not error:
        return None
    if code == NO_META_LEADER:
        return WAITING_FOR_LEADER
    raise ClusterError(f"NATS at {where} refuses JetStream to this member: {detail or code}")


class JetStreamStart:
    """Runs a member's JetStream setup steps, waiting while JetStream is not ready."""

    def __init__(self, nc: Any, where: str, wait_s: float = READY_WAIT_S) -> None:
        self.nc = nc
        self.where = where
        self.wait_s = wait_s
        self.deadline = time.monotonic() + wait_s
        self._pause = RETRY_FIRST_S
        self._told = ""
        self._ready = False  # JetStream answered, and no step failed as not ready since

    async def run(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step()`` once JetStream is ready; its failures other than "still forming" propagate.

        A step that failed so is run again: it must leave nothing behind before its
        JetStream calls succeed (the member's steps bind or create buckets and a
        stream, and subscribe only after that)."""
        while True:
            reason = None if self._ready else await not_ready_reason(self.nc, self.where)
            if reason is None:
                self._ready = True
                try:
                    return await step()
                except nats.js.errors.APIError as err:
                    if err.err_code not in FORMING:
                        raise
                    self._ready = False
                    reason = FORMING[err.err_code]
                except nats.js.errors.NoStreamResponseError:
                    reason = WAITING_FOR_STREAM_LEADER
            await self._wait(reason)

    async def _wait(self, reason: str) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ClusterError(
                f"NATS at {self.where}: JetStream was not ready within {self.wait_s:g} s ({reason})"
            )
        if reason != self._told:
            log.info("waiting for JetStream at %s (%s)", self.where, reason)
            self._told = reason
        await asyncio.sleep(min(self._pause, left))
        self._pause = min(self._pause * 2, RETRY_MAX_S)
