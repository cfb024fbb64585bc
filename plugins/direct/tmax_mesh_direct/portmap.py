"""Keeping the punch port mapped on each registered relay host (DESIGN §16).

For each registration the node asks the host for a token (``PunchListen``),
dials the host's punch observer from the punch port, writes the token and
holds that connection open; the host answers on the stream with the address
it saw (``PunchMapped``). Every step of that can fail on a lossy path: the
observer dial times out, the token's segment is late past the host's read
timeout (the host closes without a mapping), or the connection is lost
later. Without a mapping on any host the node never asks for a punch, so a
mapping that ended (or never came) while the registration lives is asked for
again, after a backoff that doubles per failure
(:func:`tmax_mesh_direct.backoff.doubling_backoff`: ``direct.probe_interval``
first) and starts over once a mapping held for ``STEADY_S``. A host without a punch observer (it refuses with
``unavailable``) is not asked again on that registration. ``node status``
shows each host's mapping, or why there is none and when the next try is.

A ``PunchToken`` is taken only as the answer to our own outstanding
``PunchListen``, only ``TOKEN_LEN`` bytes, and written to the IP the relay's
stream is connected to (:mod:`tmax_mesh_direct.relaypeer`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tmax_core.plugin.helpers import now_ms
from tmax_mesh_direct.backoff import doubling_backoff
from tmax_mesh_direct.punchaddr import parse_addr
from tmax_mesh_direct.relaypeer import relay_peer_ip
from tmax_mesh_direct.sockets import bind_punch_socket, close_with_reset
from tmax_mesh_relay.proto import host_pb2

if TYPE_CHECKING:
    from tmax_mesh_relay.transport import HostLink

log = logging.getLogger("tmax_mesh.direct")

TOKEN_LEN = 16  # the host's PunchToken: anything else is not written anywhere
OBSERVE_TIMEOUT_S = 5.0  # connecting to the host's punch observer
KEEPALIVE_IDLE_S = 25  # TCP keepalive on the observer connection: keeps the NAT mapping
STEADY_S = 60.0  # a mapping held this long was no failure: the backoff starts over
UNAVAILABLE = "unavailable"  # the host's refusal when it has no punch observer


class HostRefused(ConnectionError):
    """The host refused a ``PunchListen`` or a ``PunchRequest`` (``PunchRefused.reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"host: {reason}")
        self.reason = reason


@dataclass
class Unmapped:
    """Why a registered host has no mapping of the punch port (shown by ``node status``)."""

    failures: int
    last_error: str
    retry_at_ms: int | None  # None: not asked again on this registration

    def view(self) -> dict[str, Any]:
        return {"failures": self.failures, "last_error": self.last_error, "retry_at_ms": self.retry_at_ms}


class PortMapper:
    """The punch port's mapping on each relay host, kept while the node is registered there."""

    def __init__(self, port: int, interval_s: float, on_change: Callable[[], None]) -> None:
        self.port = port
        self.interval_s = interval_s
        self.on_change = on_change  # called when ``mapped`` or ``unmapped`` changes
        self.mapped: dict[str, str] = {}  # relay URL -> the mapped address of the punch port there
        self.unmapped: dict[str, Unmapped] = {}  # relay URL -> why it is not mapped there
        self._keepers: dict[str, asyncio.Task] = {}  # relay URL -> its registration's keeper
        self._tokens: dict[str, asyncio.Future[host_pb2.PunchToken]] = {}  # relay URL -> token awaited
        self._bad_mapped: set[str] = set()  # relay URLs warned about for an invalid mapping
        self._bad_token: set[str] = set()  # relay URLs warned about for a token not asked for

    def view(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "mapped": dict(self.mapped),
            "unmapped": {url: state.view() for url, state in self.unmapped.items()},
        }

    def registered(self, link: HostLink) -> None:
        """``link`` (re)registered: map the punch port there (what the last registration held is gone)."""
        url = link.url.url
        old = self._keepers.pop(url, None)
        if old is not None:
            old.cancel()
        self._keepers[url] = asyncio.create_task(self._keep(link), name=f"punch-map {url}")

    def stop(self) -> None:
        for task in self._keepers.values():
            task.cancel()

    # -- the host's frames ---------------------------------------------------------------

    def on_token(self, url: str, token: host_pb2.PunchToken) -> None:
        waiting = self._tokens.get(url)
        if waiting is None or waiting.done() or len(token.token) != TOKEN_LEN:
            if url not in self._bad_token:  # once per host: it may send them at any rate
                self._bad_token.add(url)
                log.warning("relay %s sent a punch token not asked for or malformed: ignored", url)
            return
        waiting.set_result(token)

    def on_refused(self, url: str, reason: str) -> bool:
        """A ``PunchRefused`` with no target: the answer to our ``PunchListen``, if one is awaited."""
        waiting = self._tokens.get(url)
        if waiting is None or waiting.done():
            return False
        waiting.set_exception(HostRefused(reason))
        return True

    def on_mapped(self, url: str, addr: str) -> None:
        """Keep the punch port's mapping the host at ``url`` saw, if it is a unicast
        IPv4 ``HOST:PORT`` (it is shown in ``node status``, logged, and the scope
        of the addresses a ``PunchGo`` from that host may name); anything else is
        the host's text, dropped, with one warning per host."""
        if self.mapped.get(url) == addr:
            return  # (a host repeating itself costs no log line and no wake-up)
        try:
            parse_addr(addr)
        except ValueError as err:  # its text is bounded and escaped
            if url not in self._bad_mapped:
                self._bad_mapped.add(url)
                log.warning("relay %s sent an invalid punch port mapping %s: ignored", url, err)
            return
        self.mapped[url] = addr
        self.unmapped.pop(url, None)
        log.info("punch port %d maps to %s on %s", self.port, addr, url)
        self.on_change()

    # -- one registration ----------------------------------------------------------------

    async def _keep(self, link: HostLink) -> None:
        """Map the punch port on ``link``'s host, and again whenever the mapping
        ends (or never came) while the link is still registered."""
        url = link.url.url
        failures = 0
        while True:
            started = time.monotonic()
            try:
                error = await self._map_once(link)
            except HostRefused as err:
                if err.reason == UNAVAILABLE:  # no punch observer there: asking again will not help
                    self._note(url, failures + 1, str(err), None)
                    return
                error = str(err)
            if not link.connected:
                return  # its next registration maps again
            failures = 1 if time.monotonic() - started >= STEADY_S else failures + 1
            backoff = doubling_backoff(self.interval_s, failures)
            self._note(url, failures, error, now_ms() + round(backoff * 1000))
            log.info("punch port not mapped on %s (%s); next try in %.0fs", url, error, backoff)
            await asyncio.sleep(backoff)

    def _note(self, url: str, failures: int, error: str, retry_at_ms: int | None) -> None:
        self.unmapped[url] = Unmapped(failures, error, retry_at_ms)
        self.on_change()

    async def _map_once(self, link: HostLink) -> str:
        """Ask for a token and hold the observer connection; why it ended.

        The host answers each ``PunchListen`` (a token, or a refusal) on the
        stream, in order; on a lossy path that can take many seconds. So the
        answer is waited for as long as the registration lives (its end cancels
        this), never asked for again meanwhile: tokens do not say which request
        they answer, and a late one taken as the answer to a newer request is
        one the host no longer knows (it replaced it)."""
        url = link.url.url
        waiting: asyncio.Future[host_pb2.PunchToken] = asyncio.get_running_loop().create_future()
        self._tokens[url] = waiting
        try:
            await link.write(host_pb2.NodeFrame(punch_listen=host_pb2.PunchListen()))
            token = await waiting
        except HostRefused:
            raise
        except ConnectionError as err:
            return str(err)
        finally:
            if self._tokens.get(url) is waiting:
                del self._tokens[url]
        try:
            return await self._observe(link, token)
        finally:
            if self.mapped.pop(url, None) is not None:
                log.info("punch port mapping on %s lost", url)
                self.on_change()

    async def _observe(self, link: HostLink, token: host_pb2.PunchToken) -> str:
        """Dial the host's observer from the punch port and hold the connection
        open; why it ended (or could not be opened).

        The observer is on the IP the registered stream is connected to (not
        the relay's name resolved again: see :mod:`tmax_mesh_direct.relaypeer`).
        The host never writes on this connection: a byte from it ends it, as
        does its end (either way the mapping is gone)."""
        try:
            ip = relay_peer_ip(link.url.target)
            if ip is None:
                raise ValueError("no connection to the relay host to take its address from")
            addr = parse_addr(f"{ip}:{token.port}")
        except ValueError as err:
            return f"cannot reach the punch observer: {err}"
        try:
            sock = close_with_reset(bind_punch_socket(self.port))  # a re-map reuses the 4-tuple at once
        except OSError as err:  # (out of file descriptors, say): tried again like any failure
            return f"cannot open a socket on the punch port: {err.strerror or type(err).__name__}"
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            async with asyncio.timeout(OBSERVE_TIMEOUT_S):
                await asyncio.get_running_loop().sock_connect(sock, addr)
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException as err:
            sock.close()
            if isinstance(err, TimeoutError):
                return "no connection to the punch observer in time"
            if isinstance(err, OSError):
                return f"cannot connect to the punch observer: {err.strerror or type(err).__name__}"
            raise
        try:
            writer.write(token.token)
            await writer.drain()
            if await reader.read(1):
                log.warning("relay %s wrote on the punch observer connection: closed", link.url.url)
                return "the host wrote on the punch observer connection"
        except OSError as err:
            return f"punch observer connection failed: {err.strerror or type(err).__name__}"
        finally:
            writer.close()
        held = link.url.url in self.mapped
        return "the host closed the punch observer connection" + ("" if held else " without a mapping")
