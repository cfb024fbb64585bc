"""TCP hole punching for friends that no dialed endpoint reaches (DESIGN §16).

The node keeps one punch port: a socket bound to it (``SO_REUSEADDR`` and
``SO_REUSEPORT``, so every punch socket can bind the same port) holds it for
the node's lifetime. On each relay host it registers with, the node has the
host learn the NAT's mapping of the punch port, and keeps it mapped there
(:mod:`tmax_mesh_direct.portmap`); punches are asked for on a host where it is.

For a friend the upgrader found no working endpoint for (``path == relay``),
the node asks the host to coordinate (``PunchRequest``); the host answers
both friends with ``PunchGo`` (the other's mapped address and when to dial)
or the requester with ``PunchRefused``. Both sides then ``connect()`` from the
punch port at once: a few tries (``PUNCH_TRIES``), each in its own slot of
the ``direct.punch_timeout`` window, so both sides retry in step. The punch
port also listens: a friend's SYN that arrives before our own ``connect()``
(a public address, where no NAT drops it) or from a port other than the one
the host saw (a symmetric NAT dialling a public node) is accepted instead of
answered with a reset, during an attempt with that friend's IP only
(anything else is closed at once). A connection is used only after the
signed-nonce probe both ways (the same proof as for a dialed endpoint); it
then carries the friend's batches (:mod:`tmax_mesh_direct.link`) through the
core ``direct`` transport.

Nothing waits on a punch: until a link is up, sends go by the relay. A
failure (refused, no connection in the window, a probe that fails) backs the
friend off: ``direct.probe_interval`` after the first, doubling up to
``BACKOFF_MAX_ROUNDS`` intervals; requests are paced below the host's lookup
limit. A link that dies (liveness: ``direct.dial_timeout``) is forgotten, and
the friend is punched again one interval later.

The host's frames are its word, not the friend's (docs/security.md): a
``PunchGo`` is acted on only as an answer to our own request (on the host it
went to), or, when the friend asked, only if we would punch that friend now
ourselves (on the relay path, not backing off, at most ``MAX_BUSY`` friends
at once); its address must pass :mod:`tmax_mesh_direct.punchaddr` (a unicast
address in the scope of our own mapping) and its delay ``MAX_DIAL_IN_MS``.

IPv4 only: the punch port is bound on ``0.0.0.0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tmax_core.errors import EnvelopeError
from tmax_core.peer import ENVELOPE_OVERHEAD, DirectTransport
from tmax_core.plugin.helpers import TokenBucket, now_ms, to_checksum
from tmax_core.printable import bounded_printable
from tmax_mesh_direct.backoff import doubling_backoff
from tmax_mesh_direct.link import FramedLink
from tmax_mesh_direct.portmap import HostRefused, PortMapper
from tmax_mesh_direct.punchaddr import parse_addr, screen
from tmax_mesh_direct.sockets import bind_punch_socket, close_with_reset
from tmax_mesh_direct.upgrade import RELAY
from tmax_mesh_relay.proto import host_pb2

if TYPE_CHECKING:
    from tmax_core.model import Friend
    from tmax_core.plugin import NodeAPI
    from tmax_mesh_direct.upgrade import Upgrader
    from tmax_mesh_relay.transport import HostLink, RelayTransport

log = logging.getLogger("tmax_mesh.direct")

PUNCH_TRIES = 4  # connect() tries within direct.punch_timeout
REQUEST_TIMEOUT_S = 5.0  # the host answers a PunchRequest within this (it pings both sides first)
REQUEST_RATE_PER_S = 0.5  # below the host's lookup limit, which the upgrader's lookups share
REQUEST_BURST = 3
ACCEPT_BACKLOG = 8
MAX_DIAL_IN_MS = 3000  # a PunchGo asking to wait longer is refused (RTTs are far below this)
ACCEPT_RETRY_S = 0.5  # after a failed accept()
MAX_BUSY = 8  # friends being punched (requested or attempted) at once


async def simultaneous_open(port: int, addr: tuple[str, int], window_s: float, tries: int) -> socket.socket:
    """``connect()`` from ``port`` to ``addr`` up to ``tries`` times, each try in
    its own slot of ``window_s`` (a refused try waits for its slot to end, so
    both sides, started together, retry together). Raises ``ConnectionError``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    error = "no try"
    for i in range(tries):
        slot_end = start + window_s * (i + 1) / tries
        sock = bind_punch_socket(port)
        try:
            async with asyncio.timeout_at(slot_end):
                await loop.sock_connect(sock, addr)
        except TimeoutError:
            error = "no connection"
        except OSError as err:
            error = err.strerror or type(err).__name__
        except BaseException:  # cancelled: never leak the socket
            sock.close()
            raise
        else:
            return close_with_reset(sock)
        sock.close()
        await asyncio.sleep(max(slot_end - loop.time(), 0))
    raise ConnectionError(f"{error} after {tries} tries in {window_s:g}s")


@dataclass
class PunchRecord:
    """What is known about punching to one friend (shown by ``node status``)."""

    attempts: int = 0
    failures: int = 0  # in a row
    turns: int = 0  # requests that led to no punch (failed, or refused ``busy``): picks the host
    last_attempt_ms: int | None = None
    last_failure: str | None = None
    not_before: float = 0.0  # monotonic time of the next request
    busy: bool = False  # a request or an attempt is in progress
    answer: asyncio.Future[host_pb2.PunchGo | None] | None = None
    asked: HostLink | None = None  # the host the outstanding request went to

    def view(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "last_attempt_ms": self.last_attempt_ms,
            "last_failure": self.last_failure,
        }


class Puncher:
    """Hole punching for one node (started by the plugin when ``direct.punch`` is on)."""

    def __init__(
        self, node: NodeAPI, relay: RelayTransport, direct: DirectTransport, upgrader: Upgrader
    ) -> None:
        self.node = node
        self.relay = relay
        self.direct = direct
        self.upgrader = upgrader
        self.window_s = node.duration_ms("direct.punch_timeout") / 1000
        self.dial_timeout_s = node.duration_ms("direct.dial_timeout") / 1000
        self.interval_s = max(node.duration_ms("direct.probe_interval") / 1000, 0.1)
        self.max_frame = node.config.get("messages.max_bytes") + ENVELOPE_OVERHEAD
        self.records: dict[bytes, PunchRecord] = {}
        self._listener = bind_punch_socket(0)  # holds the port for the node's lifetime
        self._listener.listen(ACCEPT_BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        self.ports = PortMapper(self.port, self.interval_s, self._mapping_changed)
        self.mapped = self.ports.mapped  # relay URL -> the mapped address of the punch port there
        self._expecting: dict[str, asyncio.Future[socket.socket]] = {}  # friend IP -> its attempt
        self._requests = TokenBucket(REQUEST_RATE_PER_S, REQUEST_BURST)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self.relay.punch_listener = self.on_frame
        self.node.friend_listeners.append(self._wake.set)
        self.upgrader.path_listeners.append(self._wake.set)
        self._loop_task = asyncio.create_task(self._run(), name="direct-punch")
        self._spawn(self._accept())
        self._show()
        for link in self.relay.links:
            if link.connected:
                self.on_frame(link, None)

    def stop(self) -> None:
        self.relay.punch_listener = None
        for listeners in (self.node.friend_listeners, self.upgrader.path_listeners):
            if self._wake.set in listeners:
                listeners.remove(self._wake.set)
        for task in [*self._tasks, self._loop_task]:
            if task is not None:
                task.cancel()
        self.ports.stop()
        self._listener.close()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _show(self) -> None:
        self.direct.status_extra["punch"] = self.ports.view()
        for node_id, record in self.records.items():
            self.direct.notes[node_id] = {"punch": record.view()}

    # -- frames from relay hosts ---------------------------------------------------------

    def on_frame(self, link: HostLink, frame: host_pb2.HostFrame | None) -> None:
        url = link.url.url
        if frame is None:  # (re)registered: map the punch port on this host
            self.ports.registered(link)
            return
        kind = frame.WhichOneof("frame")
        if kind == "punch_token":
            self.ports.on_token(url, frame.punch_token)
        elif kind == "punch_mapped":
            self.ports.on_mapped(url, frame.punch_mapped.addr)
        elif kind == "punch_go":
            self._on_go(link, frame.punch_go)
        elif kind == "punch_refused":
            refused = frame.punch_refused
            reason = bounded_printable(refused.reason)
            if not refused.target and self.ports.on_refused(url, reason):
                return
            record = self.records.get(bytes(refused.target))
            if record is not None and self._awaits_answer(record, link):
                assert record.answer is not None
                record.answer.set_exception(HostRefused(reason))

    def _mapping_changed(self) -> None:
        self._show()
        self._wake.set()  # a new mapping: punches can be asked for there

    # -- requesting --------------------------------------------------------------------

    def _on_relay(self, friend: Friend) -> bool:
        """Only where dialing found nothing that works: a dialed path is preferred."""
        return self.upgrader.path.get(friend.node_id) == RELAY and not self.direct.can_reach(friend)

    def _wants_punch(self, friend: Friend, now: float) -> bool:
        record = self.records.get(friend.node_id)
        if record is not None and (record.busy or record.not_before > now):
            return False
        return self._on_relay(friend) and self._busy() < MAX_BUSY

    def _busy(self) -> int:
        return sum(record.busy for record in self.records.values())

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            friends = {f.node_id: f for f in self.node.friends.values() if not f.blocked}
            for gone in set(self.records) - set(friends):
                self._forget(gone)
            now = time.monotonic()
            hosts = self._hosts()
            if hosts:
                for friend in friends.values():
                    if self._wants_punch(friend, now) and self._requests.take():
                        self._spawn(self._request(friend, self._host_for(friend, hosts)))
            # Woken by friend changes, path changes (the upgrader gave up dialing
            # someone), new mappings and ended links; else when a backoff ends.
            waits = [r.not_before - now for r in self.records.values() if not r.busy and r.not_before > now]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(min(waits, default=self.interval_s), 0.1))

    def _hosts(self) -> list[HostLink]:
        """The registered relay hosts on which the punch port is mapped."""
        return [ln for ln in self.relay.links if ln.connected and ln.url.url in self.mapped]

    def _host_for(self, friend: Friend, hosts: list[HostLink]) -> HostLink:
        """The host to ask for a punch to ``friend``: the next one after each request
        that led to no punch, so that a host refusing every request (hostile, or one
        the friend is not registered on) does not keep the others from being asked."""
        record = self.records.get(friend.node_id)
        return hosts[(record.turns if record is not None else 0) % len(hosts)]

    def _forget(self, node_id: bytes) -> None:
        self.records.pop(node_id, None)
        self.direct.notes.pop(node_id, None)
        link = self.direct.links.pop(node_id, None)
        if link is not None:
            link.close()

    async def _request(self, friend: Friend, link: HostLink) -> None:
        record = self.records.setdefault(friend.node_id, PunchRecord())
        record.busy = True
        record.answer = asyncio.get_running_loop().create_future()
        record.asked = link
        try:
            await link.write(host_pb2.NodeFrame(punch_request=host_pb2.PunchRequest(target=friend.node_id)))
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                go = await record.answer
        except TimeoutError:
            self._failed(friend, record, "no answer from the host")
        except HostRefused as err:
            if err.reason == "busy":  # the friend asked first: its PunchGo reaches us too
                record.not_before = time.monotonic() + self.interval_s
                record.turns += 1  # (or the host says so to every request)
            else:
                self._failed(friend, record, str(err))
        except ConnectionError as err:
            self._failed(friend, record, str(err))
        else:
            if go is not None:
                await self._attempt(friend, record, link, go)
        finally:
            record.answer = None
            record.asked = None
            record.busy = False

    @staticmethod
    def _awaits_answer(record: PunchRecord, link: HostLink) -> bool:
        return record.asked is link and record.answer is not None and not record.answer.done()

    def _on_go(self, link: HostLink, go: host_pb2.PunchGo) -> None:
        """Our own request's answer (from the host we asked), or the friend asked:
        then only as our own request would have been made (the friend is on the
        relay path, not in backoff, few attempts at once), so a host cannot make
        the node dial at its word."""
        friend = self.node.friends.get(bytes(go.peer))
        if friend is None or friend.blocked:
            return
        record = self.records.setdefault(friend.node_id, PunchRecord())
        if self._awaits_answer(record, link):
            assert record.answer is not None
            record.answer.set_result(go)  # its task attempts
        elif self._takes_unsolicited(friend, record):
            self._spawn(self._answer_go(friend, record, link, go))
        else:
            log.debug(
                "PunchGo for %s not taken (busy, backing off or not on the relay)",
                to_checksum(friend.node_id),
            )

    def _takes_unsolicited(self, friend: Friend, record: PunchRecord) -> bool:
        """A friend's request reaches us as a PunchGo we did not ask for. After
        a lost link (no failure yet) it is taken at once: the friend may have
        noticed the loss first. After failed attempts both sides back off alike
        but not to the millisecond, so a PunchGo up to one punch window before
        our own next request is due is taken as that request's answer; earlier
        ones are ignored. A failure doubles the backoff either way, so a host
        sending PunchGos of its own gets ever fewer dials."""
        due = record.failures == 0 or record.not_before - self.window_s <= time.monotonic()
        return not record.busy and due and self._on_relay(friend) and self._busy() < MAX_BUSY

    async def _answer_go(
        self, friend: Friend, record: PunchRecord, link: HostLink, go: host_pb2.PunchGo
    ) -> None:
        record.busy = True
        try:
            await self._attempt(friend, record, link, go)
        finally:
            record.busy = False

    def _target(self, link: HostLink, go: host_pb2.PunchGo) -> tuple[str, int]:
        """Where ``go`` says to dial, if the node may (:mod:`tmax_mesh_direct.punchaddr`);
        ``ValueError`` if not."""
        own = self.mapped.get(link.url.url)
        if own is None:
            raise ValueError("a PunchGo from a host on which the punch port is not mapped")
        if go.dial_in_ms > MAX_DIAL_IN_MS:
            raise ValueError(f"the host asked to wait {go.dial_in_ms} ms (at most {MAX_DIAL_IN_MS})")
        return screen(go.peer_addr, parse_addr(own)[0])

    # -- one attempt -------------------------------------------------------------------

    async def _attempt(
        self, friend: Friend, record: PunchRecord, link: HostLink, go: host_pb2.PunchGo
    ) -> None:
        record.attempts += 1
        record.last_attempt_ms = now_ms()
        self._show()
        who = to_checksum(friend.node_id)
        try:
            sock = await self._connect(self._target(link, go), go.dial_in_ms / 1000)
            try:  # (reset between connect() and here: ENOTCONN, an OSError)
                ip, port = sock.getpeername()[:2]
                reader, writer = await asyncio.open_connection(sock=sock)
            except BaseException:
                sock.close()
                raise
            framed = FramedLink(
                reader,
                writer,
                endpoint=f"{ip}:{port}",
                handler=self.direct.node,
                liveness_s=self.dial_timeout_s,
                max_frame=self.max_frame,
            )
            try:
                await framed.probe(friend, self.dial_timeout_s)
            except BaseException:
                framed.close()
                raise
        except (ValueError, OSError, EnvelopeError) as err:  # OSError: ConnectionError, TimeoutError, ...
            reason = str(err) or type(err).__name__
            if isinstance(err, TimeoutError):
                reason = "the probe got no answer in time"
            elif isinstance(err, EnvelopeError):
                reason = f"not this friend's node: {err}"
            self._failed(friend, record, reason)
            return
        old = self.direct.links.pop(friend.node_id, None)
        if old is not None:
            old.close()
        self.direct.links[friend.node_id] = framed
        record.failures = 0
        record.last_failure = None
        self._show()
        log.info("path to %s: direct via %s (punched)", who, framed.endpoint)
        self._spawn(self._watch(friend, record, framed))

    async def _connect(self, addr: tuple[str, int], dial_in_s: float) -> socket.socket:
        """Our ``connect()`` tries, raced with the friend's connection arriving at the punch port."""
        accepted: asyncio.Future[socket.socket] = asyncio.get_running_loop().create_future()
        expecting = addr[0] not in self._expecting
        if expecting:
            self._expecting[addr[0]] = accepted
        dialling = asyncio.ensure_future(self._dial(addr, dial_in_s))
        try:
            await asyncio.wait({dialling, accepted}, return_when=asyncio.FIRST_COMPLETED)
            if accepted.done():
                if dialling.done() and not dialling.cancelled() and dialling.exception() is None:
                    dialling.result().close()  # both at once: one connection is enough
                return accepted.result()
            return dialling.result()
        finally:
            if expecting:
                del self._expecting[addr[0]]
            if not accepted.done():
                accepted.cancel()
            if not dialling.done():
                dialling.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    late = await dialling  # connected while being cancelled: not needed
                    late.close()

    async def _dial(self, addr: tuple[str, int], dial_in_s: float) -> socket.socket:
        await asyncio.sleep(dial_in_s)
        return await simultaneous_open(self.port, addr, self.window_s, PUNCH_TRIES)

    async def _accept(self) -> None:
        """Hand a connection to the punch port to the attempt expecting its IP;
        reset any other. (A FIN would hold the punch port's 4-tuple to that
        address in FIN_WAIT/TIME_WAIT here, and our next ``connect()`` to it
        would fail with ``EADDRNOTAVAIL`` for a minute: a friend's SYN
        retransmitted after our attempt ended, on a lossy path, is such a
        connection.)"""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(self._listener)
            except OSError as err:  # e.g. out of file descriptors: keep the port, try again soon
                log.warning("punch port %d: accept failed: %s", self.port, err)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            waiting = self._expecting.get(peer[0])
            if waiting is not None and not waiting.done():
                sock.setblocking(False)
                waiting.set_result(close_with_reset(sock))
            else:
                close_with_reset(sock).close()

    async def _watch(self, friend: Friend, record: PunchRecord, link: FramedLink) -> None:
        """When the link ends: note why, and punch again one interval later."""
        await link.closed.wait()
        if self.direct.links.get(friend.node_id) is link:
            del self.direct.links[friend.node_id]
        record.last_failure = f"connection lost: {link.error}"
        record.not_before = time.monotonic() + self.interval_s
        self._show()
        self._wake.set()

    def _failed(self, friend: Friend, record: PunchRecord, reason: str) -> None:
        record.failures += 1
        record.turns += 1
        record.last_failure = reason
        backoff = doubling_backoff(self.interval_s, record.failures)
        record.not_before = time.monotonic() + backoff
        self._show()
        log.info("punch to %s failed (%s); next try in %.0fs", to_checksum(friend.node_id), reason, backoff)
