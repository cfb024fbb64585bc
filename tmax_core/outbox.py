"""The outbox: persisted sends, retried with jittered exponential backoff.

``msg send`` stores an :class:`OutboxEntry` first; only then do transports
try it. A delivery counts only when the recipient's *signed* ack verifies, so
neither a relay nor an impostor can fake one. Entries past their TTL end
``failed``. Re-sends reuse the message id, so the recipient's dedup keeps
delivery exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from tmax_core import envelope as env
from tmax_core.crypto import now_ms, to_checksum
from tmax_core.errors import EnvelopeError, Reason
from tmax_core.model import OutboxEntry
from tmax_core.proto import mesh_pb2
from tmax_core.store import expired_error

if TYPE_CHECKING:
    from tmax_core.model import Friend
    from tmax_core.node import Node

log = logging.getLogger("tmax_mesh.outbox")

# Rejections that will not change by trying again.
PERMANENT = frozenset(
    {
        Reason.MALFORMED,
        Reason.WRONG_RECIPIENT,
        Reason.BLOCKED,
        Reason.UNKNOWN_SENDER,
        Reason.BAD_SIGNATURE,
        Reason.ID_KEY_MISMATCH,
        Reason.KEY_CHANGED,
        Reason.INVITE_INVALID,
        Reason.INVITE_USED,
        Reason.INVITE_EXPIRED,
        Reason.INVITE_REVOKED,
        Reason.INVITE_UNKNOWN,
        Reason.DECRYPT_FAILED,
        Reason.SCOPE_NOT_GRANTED,
        Reason.UNKNOWN_SCOPE,
        Reason.PAYLOAD_INVALID,
        Reason.TOO_LARGE,
    }
)
FINAL = frozenset({"delivered", "failed"})
SEND_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 256


class Outbox:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.retry_initial_ms = node.duration_ms("messages.retry_initial")
        self.retry_max_ms = node.duration_ms("messages.retry_max")
        self._in_flight: set[bytes] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._wake = asyncio.Event()
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._scheduler(), name="outbox-scheduler")

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._tasks] if t), return_exceptions=True)

    async def submit(self, entry: OutboxEntry) -> OutboxEntry:
        """Persist a new message, then start its first attempt at once."""
        await self.node.db(self.node.store.outbox_put, entry)
        self._launch(entry)
        return entry

    def kick(self) -> None:
        """Retry due entries now (a transport came up, a friend came online...)."""
        self._wake.set()

    async def wait_final(self, message_id: bytes, timeout: float) -> OutboxEntry | None:
        """Wait until the entry is delivered or failed, or ``timeout`` passes."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        try:
            entry = await self.node.db(self.node.store.outbox_get, message_id)
            if entry is None or entry.status in FINAL:
                return entry
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(message_id, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(message_id, None)
        return await self.node.db(self.node.store.outbox_get, message_id)

    async def handle_async_ack(self, ack_bytes: bytes, sender_friend: Friend) -> None:
        """An ack that arrived on its own (relayed after store-and-forward)."""
        try:
            body = mesh_pb2.AckBody.FromString(mesh_pb2.SignedAck.FromString(ack_bytes).body)
        except Exception:
            log.info("dropping unparseable ack from %s", to_checksum(sender_friend.node_id))
            return
        entry = await self.node.db(self.node.store.outbox_get, body.message_id)
        if entry is None or entry.status in FINAL or entry.to_node_id != sender_friend.node_id:
            return
        await self._apply_ack(entry, sender_friend, ack_bytes, path="relay")

    # -- internals ---------------------------------------------------------

    def _launch(self, entry: OutboxEntry) -> None:
        if entry.message_id in self._in_flight:
            return
        self._in_flight.add(entry.message_id)
        task = asyncio.create_task(self._attempt(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduler(self) -> None:
        while True:
            try:
                now = now_ms()
                for message_id in await self.node.db(self.node.store.outbox_expire, now):
                    log.info("message %s failed: ttl passed", message_id.hex())
                    self._notify(message_id)
                due = await self.node.db(self.node.store.outbox_due, now, 512)
                for entry in due:
                    self._launch(entry)
            except Exception:
                log.exception("outbox scheduler pass failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(1.0, self.retry_initial_ms / 1000))

    async def _attempt(self, entry: OutboxEntry) -> None:
        node = self.node
        try:
            async with self._slots:
                friend = node.friends.get(entry.to_node_id)
                if friend is None:
                    await self._finish(entry, "failed", error="not a friend any more")
                    return
                if entry.expires_at_ms <= now_ms():
                    await self._finish(entry, "failed", error=expired_error(entry.error))
                    return
                envelope = node.seal_for(friend, entry)
                entry.attempts += 1
                handed_off: str | None = None
                last_error = "no transport can reach this friend"
                for transport in node.transports_for(friend):
                    try:
                        ack = await transport.send(friend, envelope, SEND_TIMEOUT_S)
                    except (ConnectionError, TimeoutError, OSError) as err:
                        last_error = f"{transport.name}: {err or type(err).__name__}"
                        node.transport_failed(transport, friend, err)
                        continue
                    except Exception as err:  # a transport bug must not lose the retry
                        log.exception("transport %s raised while sending", transport.name)
                        last_error = f"{transport.name}: internal error ({type(err).__name__})"
                        node.transport_failed(transport, friend, err)
                        continue
                    if ack is None:  # accepted by an intermediary (store-and-forward)
                        handed_off = transport.name
                        break
                    if await self._apply_ack(entry, friend, ack, path=transport.name):
                        return
                    last_error = entry.error or last_error
                    if entry.status == "failed":
                        return
                await self._reschedule(entry, handed_off, last_error)
        finally:
            self._in_flight.discard(entry.message_id)

    async def _apply_ack(self, entry: OutboxEntry, friend: Friend, ack: bytes, *, path: str) -> bool:
        """Record a verified ack; True when the entry reached a final state."""
        try:
            body = env.verify_ack(
                ack,
                expected_signer_public_key=friend.public_key,
                expected_signer_node_id=friend.node_id,
                message_id=entry.message_id,
            )
        except EnvelopeError as err:
            entry.error = f"unverifiable ack via {path}: {err}"
            log.warning("message %s: %s", entry.message_id.hex(), entry.error)
            return False
        if body.status in (mesh_pb2.ACK_STATUS_ACCEPTED, mesh_pb2.ACK_STATUS_DUPLICATE):
            if friend.invite_token is not None:
                await self.node.first_contact_done(friend)
            await self._finish(entry, "delivered", path=path)
            return True
        reason = body.reason or Reason.INTERNAL
        entry.error = f"rejected: {reason}" + (f" ({body.detail})" if body.detail else "")
        if reason in PERMANENT:
            await self._finish(entry, "failed", path=path, error=entry.error)
            return True
        return False

    async def _finish(
        self, entry: OutboxEntry, status: str, *, path: str | None = None, error: str | None = None
    ) -> None:
        fields = {"status": status, "attempts": entry.attempts, "error": error}
        if path is not None:
            fields["path"] = path
        if status == "delivered":
            fields["delivered_at_ms"] = now_ms()
        await self.node.db(self.node.store.outbox_update, entry.message_id, **fields)
        if status == "failed":
            log.info(
                "message %s to %s failed: %s", entry.message_id.hex(), to_checksum(entry.to_node_id), error
            )
        self.node.count_send(status, path)
        self._notify(entry.message_id)

    async def _reschedule(self, entry: OutboxEntry, handed_off: str | None, error: str) -> None:
        backoff = min(self.retry_max_ms, self.retry_initial_ms * 2 ** min(entry.attempts - 1, 16))
        if handed_off:  # the relay holds it; give the async ack time before re-sending
            backoff = max(backoff, self.retry_max_ms)
        delay = int(backoff * random.uniform(0.5, 1.0))
        await self.node.db(
            self.node.store.outbox_update,
            entry.message_id,
            status="sent" if handed_off else entry.status,
            path=handed_off,
            attempts=entry.attempts,
            next_attempt_ms=now_ms() + delay,
            error=None if handed_off else error,
        )

    def _notify(self, message_id: bytes) -> None:
        for fut in self._waiters.get(message_id, []):
            if not fut.done():
                fut.set_result(None)
