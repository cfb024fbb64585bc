"""Hole punching on the host (DESIGN §16): learn each node's mapped punch
address, and tell a pair of mutual friends when to dial each other.

Mapping: a registered node asks for a token (``PunchListen``) on its
authenticated stream; it then dials the host's punch observer port (a plain
TCP listener on the host's IP) *from its punch socket* and writes the token.
The source address of that connection is what the node's NAT maps the punch
port to; the host tells the node (``PunchMapped``) and keeps the connection
open, which keeps the NAT mapping alive. A token is single use and expires
after ``TOKEN_TTL_S``.

The observer port is open to anyone, so what a stranger can hold there is
bounded: a connection from a source (:func:`tmax_core.netaddr.source_key`)
that no token was issued to (the node's stream and its punch socket leave
through the same NAT, so they share a source) is closed at once; one that does
not present its token within ``OBSERVE_READ_TIMEOUT_S`` is closed; at most
``MAX_UNAUTHENTICATED`` are waiting for their token at once, and
``MAX_UNAUTHENTICATED_PER_SOURCE`` from one source. A held connection is one
per registered node, at most ``max_held`` in all (the host's
``max_connections``: each node costs the host two file descriptors, see
docs/relay.md); a node never writes after its token, so a byte from it ends
the connection (no read loop a node can keep busy).

Coordination: ``PunchRequest{target}`` is answered only for mutual friends
(each in the other's lookup allow list), rate limited with the lookup bucket
of the connection, and refused the same way (``not_found``) whether the target
is offline, unknown or not a mutual friend. The host pings both sides on their
streams, and sends each ``PunchGo`` with the other's mapped address and a
delay chosen so that both SYNs leave at about the same moment: with ``rtt_a``
and ``rtt_b`` measured now, both dial ``max(rtt_a, rtt_b) / 2 + DIAL_MARGIN_MS``
after the host sent the frames, so side X waits that minus ``rtt_x / 2``
after it receives its frame (DCUtR does the same from one side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from tmax_core.config import is_wildcard_host
from tmax_core.netaddr import source_key
from tmax_mesh_relay.proto import host_pb2

if TYPE_CHECKING:
    from tmax_core.tokenbucket import TokenBucket
    from tmax_mesh_relay.allowlists import Fingerprints

log = logging.getLogger("tmax_mesh.host")

TOKEN_LEN = 16
TOKEN_TTL_S = 10.0
OBSERVE_READ_TIMEOUT_S = 2.0
MAX_UNAUTHENTICATED = 1024
MAX_UNAUTHENTICATED_PER_SOURCE = 16
RTT_TIMEOUT_S = 2.0
DIAL_MARGIN_MS = 50


class Connection(Protocol):
    """What the coordinator uses of the hub's ``Connection`` (one node's stream)."""

    id: str
    source: str  # source_key of the stream's peer
    node_id: bytes | None
    node_hex: str
    lookup_allow: bytes
    lookup_bucket: TokenBucket
    closing: bool

    @property
    def log_extra(self) -> dict[str, str]: ...


C = TypeVar("C", bound=Connection)


def format_addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def dial_delays_ms(rtt_a_ms: float, rtt_b_ms: float) -> tuple[int, int]:
    """How long each side waits after receiving its ``PunchGo`` so both dial at once."""
    together = max(rtt_a_ms, rtt_b_ms) / 2 + DIAL_MARGIN_MS
    return round(together - rtt_a_ms / 2), round(together - rtt_b_ms / 2)


@dataclass
class _Token(Generic[C]):
    conn: C
    expires: float
    source: str


@dataclass
class _Mapped(Generic[C]):
    conn: C
    addr: str
    writer: asyncio.StreamWriter


class PunchCoordinator(Generic[C]):
    """The host's punch state; the hub calls ``on_*`` for the punch frames."""

    def __init__(
        self,
        routes: Mapping[bytes, C],
        fingerprints: Fingerprints,
        write: Callable[[C, host_pb2.HostFrame, str], Awaitable[bool]],
        clock: Callable[[], float],
        counts: MutableMapping[str, int],
        max_held: int,
    ) -> None:
        self.routes = routes
        self.fingerprints = fingerprints
        self.write = write
        self.clock = clock
        self.port: int | None = None  # the observer's port, once started
        # Issued and not yet presented, oldest first (all live TOKEN_TTL_S: expired ones lead).
        self.tokens: dict[bytes, _Token[C]] = {}
        self._token_of: dict[str, bytes] = {}  # connection id -> its live token
        self._token_sources: dict[str, int] = {}  # source -> live tokens issued to it
        self.mapped: dict[bytes, _Mapped[C]] = {}  # node id -> its mapped punch address
        self.max_held = max_held
        self.counts = counts  # punch requests by outcome (go, not_found, ...): a metric
        self._pings: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._busy: set[frozenset[bytes]] = set()  # pairs being coordinated
        self._unauthenticated: dict[str, int] = {}  # source -> connections waiting for a token
        self._unauthenticated_total = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int = 0) -> int:
        """Listen for punch connections on ``host`` (``port`` 0: an ephemeral one);
        returns the port. A wildcard host (``0.0.0.0``, ``::``) listens on both
        IPv4 and IPv6 on the same port: the token names one port for all nodes,
        and an IPv6 listener alone takes no IPv4 connections (asyncio sets
        ``IPV6_V6ONLY``). Raises ``OSError`` if the port cannot be bound."""
        host = host.strip("[]")
        first = "0.0.0.0" if is_wildcard_host(host) else host
        self._servers.append(await asyncio.start_server(self._observe, first, port))
        self.port = self._servers[0].sockets[0].getsockname()[1]
        if is_wildcard_host(host):
            try:
                self._servers.append(await asyncio.start_server(self._observe, "::", self.port))
            except OSError as err:  # no IPv6 here, or that port taken on it
                log.info("punch observer on IPv4 only: [::]:%d: %s", self.port, err.strerror)
        return self.port

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for mapped in self.mapped.values():
            mapped.writer.close()
        self.mapped.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def _live(self, conn: C) -> bool:
        return conn.node_id is not None and self.routes.get(conn.node_id) is conn and not conn.closing

    # -- mapping ------------------------------------------------------------------------

    async def on_listen(self, conn: C, _msg: host_pb2.PunchListen) -> None:
        if self.port is None:
            await self._refuse(conn, b"", "unavailable")
            return
        # One live token per connection: a node asking again replaces its token.
        old = self._token_of.get(conn.id)
        if old is not None:
            self._take_token(old)
        token = os.urandom(TOKEN_LEN)
        self.tokens[token] = _Token(conn, self.clock() + TOKEN_TTL_S, conn.source)
        self._token_of[conn.id] = token
        self._token_sources[conn.source] = self._token_sources.get(conn.source, 0) + 1
        await self.write(
            conn,
            host_pb2.HostFrame(punch_token=host_pb2.PunchToken(token=token, port=self.port)),
            "punch_token",
        )

    def _take_token(self, token: bytes) -> _Token[C] | None:
        """Remove ``token`` (and its counts); what it was issued for, if it was."""
        issued = self.tokens.pop(token, None)
        if issued is not None:
            if self._token_of.get(issued.conn.id) == token:
                del self._token_of[issued.conn.id]
            left = self._token_sources[issued.source] - 1
            if left:
                self._token_sources[issued.source] = left
            else:
                del self._token_sources[issued.source]
        return issued

    def _expire_tokens(self) -> None:
        now = self.clock()
        while self.tokens:
            token, issued = next(iter(self.tokens.items()))
            if issued.expires > now:
                return
            self._take_token(token)

    def _admit(self, source: str) -> bool:
        """Whether a new observer connection from ``source`` may wait for its token."""
        self._expire_tokens()
        return (
            source in self._token_sources
            and self._unauthenticated_total < MAX_UNAUTHENTICATED
            and self._unauthenticated.get(source, 0) < MAX_UNAUTHENTICATED_PER_SOURCE
        )

    async def _read_token(self, reader: asyncio.StreamReader, source: str) -> bytes:
        self._unauthenticated[source] = self._unauthenticated.get(source, 0) + 1
        self._unauthenticated_total += 1
        try:
            return await asyncio.wait_for(reader.readexactly(TOKEN_LEN), OBSERVE_READ_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            return b""
        finally:
            self._unauthenticated_total -= 1
            left = self._unauthenticated[source] - 1
            if left:
                self._unauthenticated[source] = left
            else:
                del self._unauthenticated[source]

    async def _observe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip, port = writer.get_extra_info("peername")[:2]
        source = source_key(ip)
        if not self._admit(source):
            writer.close()
            return
        token = await self._read_token(reader, source)
        pending = self._take_token(token)
        if (
            pending is None
            or pending.expires < self.clock()
            or not self._live(pending.conn)
            or len(self.mapped) >= self.max_held
        ):
            writer.close()
            return
        conn = pending.conn
        assert conn.node_id is not None
        mapped = _Mapped(conn, format_addr(ip, port), writer)
        old = self.mapped.pop(conn.node_id, None)
        if old is not None:
            old.writer.close()
        self.mapped[conn.node_id] = mapped
        log.info("punch port of %s maps to %s", conn.node_hex, mapped.addr, extra=conn.log_extra)
        frame = host_pb2.HostFrame(punch_mapped=host_pb2.PunchMapped(addr=mapped.addr))
        try:
            # Held open (keeps the NAT mapping) until the node closes it, writes
            # on it (nodes never do), or its stream ends (forget() closes it).
            if await self.write(conn, frame, "punch_mapped"):
                with contextlib.suppress(OSError):
                    if await reader.read(1):
                        log.info(
                            "%s wrote on its punch connection: closed", conn.node_hex, extra=conn.log_extra
                        )
        finally:
            if self.mapped.get(conn.node_id) is mapped:
                del self.mapped[conn.node_id]
            writer.close()

    def forget(self, conn: C) -> None:
        """The stream ended: drop its mapping (the node maps again when it re-registers)."""
        token = self._token_of.get(conn.id)
        if token is not None:
            self._take_token(token)
        if conn.node_id is None:
            return
        mapped = self.mapped.get(conn.node_id)
        if mapped is not None and mapped.conn is conn:
            del self.mapped[conn.node_id]
            mapped.writer.close()
        for key in [k for k in self._pings if k[0] == conn.id]:
            fut = self._pings.pop(key)
            if not fut.done():
                fut.set_exception(ConnectionError("stream ended"))

    # -- coordination -------------------------------------------------------------------

    async def on_request(self, conn: C, req: host_pb2.PunchRequest) -> None:
        target = bytes(req.target)
        if not conn.lookup_bucket.take(self.clock()):
            await self._refuse(conn, target, "rate_limited")
            return
        # Coordinating waits for both sides' pongs, which the reading task of
        # the requester must be free to read: run it on its own task.
        task = asyncio.create_task(self._coordinate(conn, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mutual(self, conn: C, dest: C | None) -> bool:
        if dest is None or conn.node_id is None or dest.node_id is None:
            return False
        return self.fingerprints.contains(dest.lookup_allow, conn.node_id) and self.fingerprints.contains(
            conn.lookup_allow, dest.node_id
        )

    async def _coordinate(self, conn: C, target: bytes) -> None:
        dest = self.routes.get(target)
        if not self._mutual(conn, dest):
            await self._refuse(conn, target, "not_found")
            return
        assert dest is not None and conn.node_id is not None
        pair = frozenset((conn.node_id, target))
        mine, theirs = self.mapped.get(conn.node_id), self.mapped.get(target)
        if mine is None or theirs is None or mine.conn is not conn or theirs.conn is not dest:
            await self._refuse(conn, target, "no_mapping")
            return
        if pair in self._busy:
            await self._refuse(conn, target, "busy")
            return
        self._busy.add(pair)
        try:
            rtts = await asyncio.gather(self._rtt_ms(conn), self._rtt_ms(dest))
            if None in rtts:
                await self._refuse(conn, target, "no_answer")
                return
            rtt_a, rtt_b = rtts
            assert rtt_a is not None and rtt_b is not None
            delay_a, delay_b = dial_delays_ms(rtt_a, rtt_b)
            attempt = os.urandom(8)
            go_a = host_pb2.PunchGo(peer=target, peer_addr=theirs.addr, dial_in_ms=delay_a, attempt=attempt)
            go_b = host_pb2.PunchGo(
                peer=conn.node_id, peer_addr=mine.addr, dial_in_ms=delay_b, attempt=attempt
            )
            await asyncio.gather(
                self.write(conn, host_pb2.HostFrame(punch_go=go_a), "punch_go"),
                self.write(dest, host_pb2.HostFrame(punch_go=go_b), "punch_go"),
            )
            self._count("go")
            log.info(
                "punch %s: %s <-> %s (rtt %.0f / %.0f ms)",
                attempt.hex(),
                mine.addr,
                theirs.addr,
                rtt_a,
                rtt_b,
                extra=conn.log_extra,
            )
        finally:
            self._busy.discard(pair)

    async def _rtt_ms(self, conn: C) -> float | None:
        """Ping ``conn`` on its stream; the round trip in ms, or None without a pong in time."""
        (token,) = struct.unpack("<Q", os.urandom(8))
        key = (conn.id, token)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[key] = fut
        started = self.clock()
        try:
            if not await self.write(conn, host_pb2.HostFrame(ping=host_pb2.Ping(time_ms=token)), "ping"):
                return None
            await asyncio.wait_for(fut, RTT_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self._pings.pop(key, None)
        return (self.clock() - started) * 1000

    def on_pong(self, conn: C, pong: host_pb2.Pong) -> None:
        fut = self._pings.get((conn.id, pong.time_ms))
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _refuse(self, conn: C, target: bytes, reason: str) -> None:
        self._count(reason)
        frame = host_pb2.HostFrame(punch_refused=host_pb2.PunchRefused(target=target, reason=reason))
        await self.write(conn, frame, "punch_refused")
