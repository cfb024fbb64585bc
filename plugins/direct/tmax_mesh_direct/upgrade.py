"""Rendezvous-assisted direct upgrade (DESIGN §11).

For every friend, the :class:`Upgrader` asks the relay host where the friend
can be dialled (:meth:`tmax_mesh_relay.transport.RelayTransport.lookup`: the
friend's advertised endpoints, and its observed IP with each advertised port),
probes those endpoints in the background with a short timeout (an empty
``DeliverBatch``, whose signed ack proves that the friend itself answers
there), and hands them to the core ``direct`` transport
(``DirectTransport.discovered``) with their health. Sends then go direct; any
failure marks the endpoint unhealthy and the relay carries the message; the
next probe round upgrades again. Delivery never waits on any of this: the
relay is always there as the fallback.

Scheduling: each friend is refreshed every ``direct.probe_interval``. A friend
the host knows no endpoint for yet (a new friend whose own allow-list has not
reached the host, or one that is offline) is retried sooner, with a backoff
from one second up to the interval, so a new friendship upgrades within
seconds. Lookups are paced below the host's default per-connection lookup
rate, so a node with many friends spreads them out instead of being refused.
A failed lookup (relay down, rate limited, no answer) keeps the endpoints the
host gave last time: losing the relay is no reason to forget a working direct
path.

Bounds (issue 13, item 7): a friend's card and the host's answer are someone
else's input, so what is dialled is bounded. The lookup answer is screened like
a card (:func:`tmax_core.endpoints.screen_endpoints`: at most 32 TCP
``HOST:PORT`` targets); at most ``PROBES_PER_FRIEND`` endpoints of one friend
and ``PROBES_AT_ONCE`` in all are probed at once; one friend's probes in a
round end after ``ROUND_PROBE_TIMEOUTS`` probe timeouts (what is left is
probed first next round); and an endpoint that keeps failing is probed again
only after a backoff that doubles per failure, up to ``BACKOFF_MAX_ROUNDS``
intervals (the first failure is retried the next round, as before). So one
friend costs at most 32 + 32 dials per backoff period, 4 at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from tmax_core.endpoints import screen_endpoints
from tmax_core.errors import EnvelopeError
from tmax_core.peer import DELIVER_BATCH, DirectTransport
from tmax_core.plugin.helpers import TokenBucket, to_checksum
from tmax_core.printable import bounded_printable
from tmax_core.proto import mesh_pb2
from tmax_mesh_direct.probe import new_nonce, verify_probe_answer

if TYPE_CHECKING:
    from tmax_core.model import Friend
    from tmax_core.plugin import NodeAPI
    from tmax_mesh_relay.transport import RelayTransport

log = logging.getLogger("tmax_mesh.direct")

DIRECT = "direct"
RELAY = "relay"

# Below the host's default lookup limits (2/s sustained, burst 10 per connection).
LOOKUP_RATE_PER_S = 1.5
LOOKUP_BURST = 8
FIRST_RETRY_S = 1.0  # retry delay for a friend the host knows no endpoint for (doubles)
PROBES_PER_FRIEND = 4  # endpoints of one friend probed at once
PROBES_AT_ONCE = 16  # probes in flight at once, all friends together
ROUND_PROBE_TIMEOUTS = 3  # one friend's probe round ends after this many probe timeouts
BACKOFF_MAX_ROUNDS = 16  # a failing endpoint is still probed at least every 16 intervals


@dataclass
class _Failing:
    """An endpoint of a friend whose probes keep failing."""

    failures: int
    error: str
    not_before: float  # monotonic time of the next probe


class Upgrader:
    """Keeps each friend's direct path state fresh for one node."""

    def __init__(self, node: NodeAPI, relay: RelayTransport, direct: DirectTransport) -> None:
        self.node = node
        self.relay = relay
        self.direct = direct
        self.dial_timeout_s = node.duration_ms("direct.dial_timeout") / 1000
        self.interval_s = max(node.duration_ms("direct.probe_interval") / 1000, 0.1)
        # The probes decide an endpoint's health: a failure (probe or send)
        # keeps it out of use until a later probe finds it working again,
        # rather than for the core's fixed retry delay (shorter than a probe
        # interval, after which a dead endpoint would cost every send a dial).
        direct.RETRY_AFTER_FAILURE_S = max(
            DirectTransport.RETRY_AFTER_FAILURE_S, self.interval_s + 2 * self.dial_timeout_s + 1
        )
        self.path: dict[bytes, str] = {}  # friend node id -> "direct" | "relay"
        self.found: dict[bytes, list[str]] = {}  # friend node id -> the host's last answer
        self.errors: dict[bytes, str] = {}  # friend node id -> why direct does not work
        self._due: dict[bytes, float] = {}  # friend node id -> next refresh (monotonic)
        self._retry: dict[bytes, float] = {}  # friend node id -> current short-retry delay
        self._seen: dict[bytes, tuple[str, ...]] = {}  # friend node id -> endpoints last probed
        self._failing: dict[bytes, dict[str, _Failing]] = {}  # friend node id -> endpoint -> state
        self._dropped: dict[bytes, str] = {}  # friend node id -> what its last lookup answer lost
        # A probe is a dial and a call, each up to the dial timeout.
        self.round_deadline_s = ROUND_PROBE_TIMEOUTS * 2 * self.dial_timeout_s
        self._slots = asyncio.Semaphore(PROBES_AT_ONCE)
        self._lookups = TokenBucket(LOOKUP_RATE_PER_S, LOOKUP_BURST)  # paces, never refuses
        self._wake = asyncio.Event()
        # Called (no arguments) when a friend's path changes (the puncher listens).
        self.path_listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.node.friend_listeners.append(self._wake.set)
        self._task = asyncio.create_task(self._run(), name="direct-upgrade")

    def stop(self) -> None:
        if self._wake.set in self.node.friend_listeners:
            self.node.friend_listeners.remove(self._wake.set)
        if self._task is not None:
            self._task.cancel()

    def prefers_direct(self, friend: Friend) -> bool | None:
        """True: direct is healthy; False: known not to work; None: not known yet."""
        if self.direct.link(friend) is not None:
            return True  # punched (tmax_mesh_direct.punch)
        state = self.path.get(friend.node_id)
        if state is None:
            return None
        return state == DIRECT and self.direct.can_reach(friend)

    # -- the loop ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # Cleared before the round reads the friends: a change during the
            # round wakes the next one at once instead of being lost.
            self._wake.clear()
            try:
                await self._round()
            except Exception:  # never let one bad round end the upgrades
                log.exception("direct upgrade round failed")
            now = time.monotonic()
            next_due = min(self._due.values(), default=now + self.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(next_due - now, 0.05))

    async def _round(self) -> None:
        friends = {f.node_id: f for f in self.node.friends.values() if not f.blocked}
        for gone in set(self._due) - set(friends):
            self._forget(gone)
        now = time.monotonic()
        due = []
        for node_id, friend in friends.items():
            if tuple(friend.endpoints) != self._seen.get(node_id):
                self._due[node_id] = now  # new friend, or it advertised new endpoints
            if self._due.get(node_id, now) <= now:
                due.append(friend)
                self._due[node_id] = now + self.interval_s  # a refresh below may bring it forward
        tasks = []
        for friend in due:
            if (wait := self._lookups.reserve()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self.refresh(friend)))
        for friend, result in zip(due, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("refreshing the direct path to %s failed: %r", to_checksum(friend.node_id), result)

    def _forget(self, node_id: bytes) -> None:
        tables = (
            self.path,
            self.found,
            self.errors,
            self._due,
            self._retry,
            self._seen,
            self._failing,
            self._dropped,
        )
        for table in tables:
            table.pop(node_id, None)
        self.direct.discovered.pop(node_id, None)

    # -- one friend -------------------------------------------------------------

    async def refresh(self, friend: Friend) -> None:
        """Look the friend up, probe what the host returned, record the result."""
        node_id = friend.node_id
        try:
            answer = await self.relay.lookup(node_id)
        except (ConnectionError, TimeoutError) as err:
            # No answer (relay down, rate limited, ...): keep what the host said last time.
            log.debug("lookup of %s: %s", to_checksum(node_id), str(err) or type(err).__name__)
            found = self.found.get(node_id, [])
        else:
            found = self._screen(node_id, answer)
            self.found[node_id] = found
        if node_id not in self.node.friends:
            return  # removed while we asked
        self._seen[node_id] = tuple(friend.endpoints)
        candidates = list(dict.fromkeys([*friend.endpoints, *found]))
        now = time.monotonic()
        failing = self._failing.setdefault(node_id, {})
        for gone in set(failing) - set(candidates):
            del failing[gone]
        # Endpoints not backing off, the ones that failed least first (a
        # working one, then those the last round had no time for).
        due = sorted(
            (ep for ep in candidates if ep not in failing or failing[ep].not_before <= now),
            key=lambda ep: failing[ep].failures if ep in failing else 0,
        )
        probed = await self._probe_round(friend, due)
        errors: list[str | None] = []
        for ep in candidates:
            if ep in probed:
                errors.append(self._record(friend, ep, probed[ep], now))
            elif ep in due:
                errors.append("not probed within the round's deadline")
            else:
                backoff = failing[ep]
                errors.append(f"{backoff.error}; next probe in {backoff.not_before - now:.0f}s")
        # Every endpoint the host gave goes to the transport, with its health
        # (what failed stays marked failed), so `node status` shows them all.
        self.direct.discovered[node_id] = [ep for ep in found if ep not in friend.endpoints]
        healthy = [ep for ep, err in zip(candidates, errors, strict=True) if err is None]
        failed = [f"{ep} ({err})" for ep, err in zip(candidates, errors, strict=True) if err is not None]
        state = DIRECT if healthy else RELAY
        error = None if healthy else ("; ".join(failed) or "no endpoint known")
        if self.path.get(node_id) != state or (state == RELAY and self.errors.get(node_id) != error):
            if healthy:
                log.info("path to %s: direct via %s", to_checksum(node_id), healthy[0])
            elif failed:
                log.info("path to %s: relay (direct probe failed: %s)", to_checksum(node_id), error)
            else:
                log.info("path to %s: relay (no direct endpoint known)", to_checksum(node_id))
        changed = self.path.get(node_id) != state
        self.path[node_id] = state
        if changed:
            for listener in self.path_listeners:
                listener()
        if error is None:
            self.errors.pop(node_id, None)
        else:
            self.errors[node_id] = error
        # Nothing to dial yet: ask again soon (backing off up to the interval).
        if candidates:
            self._retry.pop(node_id, None)
        else:
            delay = min(self._retry.get(node_id, FIRST_RETRY_S / 2) * 2, self.interval_s)
            self._retry[node_id] = delay
            if node_id in self._due:
                self._due[node_id] = min(self._due[node_id], time.monotonic() + delay)

    def _screen(self, node_id: bytes, answer: list[str]) -> list[str]:
        """The host's answer as a friend's card would be kept; what it loses is logged once."""
        screened = screen_endpoints(answer)
        dropped = f"{screened.dropped} (first: {screened.example})" if screened.dropped else ""
        if dropped and self._dropped.get(node_id) != dropped:
            log.warning("lookup answer for %s: dropped %s endpoint(s)", to_checksum(node_id), dropped)
        self._dropped[node_id] = dropped
        return screened.kept

    async def _probe_round(self, friend: Friend, endpoints: list[str]) -> dict[str, str | None]:
        """Probe ``endpoints`` (bounded per friend and in all) until the round's
        deadline; returns the outcome of each probe that finished."""
        results: dict[str, str | None] = {}
        per_friend = asyncio.Semaphore(PROBES_PER_FRIEND)

        async def one(endpoint: str) -> None:
            async with per_friend, self._slots:
                try:
                    results[endpoint] = await self.probe(endpoint, friend)
                except asyncio.CancelledError:
                    self.direct.mark_failed(endpoint)  # out of time: close its half-open channel
                    raise

        tasks = [asyncio.create_task(one(ep)) for ep in endpoints]
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=self.round_deadline_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return results

    def _record(self, friend: Friend, endpoint: str, error: str | None, now: float) -> str | None:
        """Note a probe's outcome; a failure backs the endpoint off (doubling, capped)."""
        failing = self._failing[friend.node_id]
        if error is None:
            failing.pop(endpoint, None)
            return None
        failures = failing[endpoint].failures + 1 if endpoint in failing else 1
        backoff = min(
            self.interval_s * (2 ** min(failures - 1, 16) - 1), self.interval_s * BACKOFF_MAX_ROUNDS
        )
        failing[endpoint] = _Failing(failures, error, now + backoff)
        if backoff > 0:  # sends skip it too, until it is probed again
            self.direct.mark_failed(endpoint, for_s=backoff + self.interval_s)
        return error

    async def probe(self, endpoint: str, friend: Friend) -> str | None:
        """Dial ``endpoint`` and check that ``friend`` answers there: ``None``
        if so, else why not.

        The check is an empty ``DeliverBatch`` with a fresh nonce: the node
        there answers with a batch ack signed by its key that echoes the
        nonce, so the probe proves who listens on the endpoint now, not just
        that some PeerService does (an observed address can be another node's:
        a shared NAT, a port reused after a restart), and a recorded answer
        replayed by someone else on that port is refused.
        """
        channel = self.direct.channel(endpoint)
        nonce = new_nonce()
        probe = mesh_pb2.EnvelopeBatch(nonce=nonce).SerializeToString()
        try:
            await asyncio.wait_for(channel.channel_ready(), self.dial_timeout_s)
            answer = await channel.unary_unary(DELIVER_BATCH)(probe, timeout=self.dial_timeout_s)
            verify_probe_answer(answer, friend, nonce)
        except TimeoutError:
            error = "dial timed out"
        except grpc.aio.AioRpcError as err:
            error = f"{err.code().name} {bounded_printable(err.details() or '')}".strip()  # peer's text
        except grpc.aio.UsageError:
            error = "connection closed after a send on it failed"
        except asyncio.CancelledError:
            # grpc.aio cancels the calls of a channel that is closed under them:
            # a concurrent send failed and dropped this channel. Only a
            # cancellation of this task itself is passed on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            error = "connection closed after a send on it failed"
        except EnvelopeError as err:
            error = f"not this friend's node: {err}"
        else:
            self.direct.mark_healthy(endpoint)
            return None
        self.direct.mark_failed(endpoint)
        return error
