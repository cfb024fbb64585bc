"""Who is in the cluster: each member's public URLs in a JetStream KV bucket
whose entries expire unless their member refreshes them (DESIGN §15).

A member announces itself on ``tmax.members`` when it joins or leaves, and the
others re-read the bucket at once; otherwise every member renews its entry and
re-reads the others' every ``REFRESH_S``, so a killed member drops out of the
lists within ``TTL_S``. Nodes learn the list in ``Registered.member_urls``,
and every change of it in a ``Members`` frame (``on_change``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoKeysError

from tmax_core import boundedjson
from tmax_mesh_relay.clustermetrics import ClusterMetrics

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger("tmax_mesh.host")

BUCKET = "tmax_members"
SUBJECT = "tmax.members"
TTL_S = 30.0
REFRESH_S = TTL_S / 3
MAX_BYTES = 16 * 1024 * 1024
MAX_VALUE_SIZE = 64 * 1024
"""Bounds of the member list: a member's URLs are a short JSON list."""


async def open_bucket(
    nc: Any,
    bucket: str,
    replicas: int,
    ttl_s: float | None = None,
    *,
    max_bytes: int,
    max_value_size: int,
) -> Any:
    """Bind a KV bucket of the cluster, creating it if no member has yet: on file (a
    restarted NATS server still has it), ``replicas`` as the held envelopes', and
    bounded (a full bucket refuses new entries: nodes cannot grow NATS's store)."""
    js = nc.jetstream()
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        config = KeyValueConfig(
            bucket=bucket,
            ttl=ttl_s,
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
            max_bytes=max_bytes,
            max_value_size=max_value_size,
        )
        return await js.create_key_value(config)


class Members:
    """This member's entry in the bucket, and every member's URLs as last read."""

    def __init__(
        self,
        nc: Any,
        member_id: str,
        own_urls: list[str],
        metrics: ClusterMetrics,
        replicas: int,
        on_change: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.nc = nc
        self.replicas = replicas
        self.kv: Any = None  # bound by refresh(), again after NATS lost the bucket
        self.member_id = member_id
        self.own_urls = own_urls
        self.metrics = metrics
        self.urls: list[str] = list(own_urls)
        self.on_change = on_change

    @classmethod
    async def join(
        cls,
        nc: Any,
        member_id: str,
        own_urls: list[str],
        metrics: ClusterMetrics,
        replicas: int = 1,
        on_change: Callable[[list[str]], None] | None = None,
    ) -> Members:
        members = cls(nc, member_id, own_urls, metrics, replicas, on_change)
        await members._refresh()
        await nc.subscribe(SUBJECT, cb=members._on_announce)
        await members.announce()
        return members

    async def announce(self) -> None:
        """Tell the other members to re-read the list (this one joined, came back or left)."""
        await self.nc.publish(SUBJECT, self.member_id.encode())

    async def _refresh(self) -> None:
        """Renew this member's entry and re-read everyone's (binding the bucket first if needed)."""
        if self.kv is None:
            self.kv = await open_bucket(
                self.nc, BUCKET, self.replicas, TTL_S, max_bytes=MAX_BYTES, max_value_size=MAX_VALUE_SIZE
            )
        await self.kv.put(self.member_id, json.dumps(self.own_urls).encode())
        await self.reload()

    async def refresh(self) -> None:
        """:meth:`_refresh`, with NATS errors counted: the next refresh tries again,
        re-creating the bucket if NATS lost it (a restarted server keeps no memory streams)."""
        try:
            await self._refresh()
        except (TimeoutError, nats.errors.Error) as err:
            self.kv = None
            self.metrics.errors["kv"] += 1
            log.debug("cluster: refreshing the member list failed: %s", err)

    async def reload(self) -> None:
        """Read every member's URLs (this member's first)."""
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            keys = []
        urls = list(self.own_urls)
        for key in sorted(keys):
            if key == self.member_id:
                continue
            try:
                listed = boundedjson.loads((await self.kv.get(key)).value or b"[]", max_depth=1)
            except (nats.errors.Error, ValueError):
                continue  # expired or deleted meanwhile, or not a flat JSON list
            if isinstance(listed, list):  # else not a member's list of URLs: skipped
                urls.extend(u for u in listed if isinstance(u, str))
        urls = list(dict.fromkeys(urls))
        if urls != self.urls:
            self.urls = urls
            if self.on_change is not None:
                self.on_change(urls)

    async def _on_announce(self, msg: Msg) -> None:
        if msg.data.decode(errors="replace") == self.member_id or self.kv is None:
            return
        try:
            await self.reload()
        except (TimeoutError, nats.errors.Error):
            self.metrics.errors["kv"] += 1

    async def run(self) -> None:
        """Refresh every ``REFRESH_S`` for as long as the member runs."""
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.refresh()

    async def leave(self) -> None:
        """Remove this member's entry and tell the others (best effort: it expires anyway)."""
        if self.kv is None:
            return
        try:
            await self.kv.delete(self.member_id)
            await self.announce()
            await self.nc.flush(timeout=1)
        except (TimeoutError, nats.errors.Error):
            self.metrics.errors["kv"] += 1
