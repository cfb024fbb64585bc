"""What ``tmax-host`` needs to start a cluster member (``--cluster``) without
importing the NATS client: a standalone host parses the flag and pays nothing
else, and NATS is loaded only when a cluster is joined."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tmax_core.errors import MeshError

if TYPE_CHECKING:
    from tmax_mesh_relay.cluster import Cluster
    from tmax_mesh_relay.hub import Hub

SCHEMES = ("nats", "tls")


def parse_cluster_urls(text: str) -> list[str]:
    """``nats://HOST:PORT[,nats://...]`` (``tls://`` too) as a list; ValueError says what is wrong."""
    urls = [part.strip() for part in str(text).split(",") if part.strip()]
    if not urls:
        raise ValueError("give at least one NATS server URL, e.g. nats://127.0.0.1:4222")
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in SCHEMES or not parts.hostname or port is None:
            raise ValueError(f"{url!r} is not a NATS server URL like nats://HOST:PORT")
    return urls


async def join(hub: Hub, urls: list[str], replicas: int = 1) -> Cluster:
    """Join the cluster of the NATS servers ``urls`` (see :mod:`tmax_mesh_relay.cluster`);
    MeshError (one line) when the extra is missing or NATS cannot be used."""
    try:
        from tmax_mesh_relay.cluster import Cluster
    except ImportError as err:
        raise MeshError(
            f"--cluster needs the NATS client: pip install 'tmax-mesh-relay[cluster]' ({err})"
        ) from None
    return await Cluster.join(hub, urls, replicas)
