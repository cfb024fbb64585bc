"""``tmax-host --cluster``: the one place the host imports the NATS client, only
when it joins a cluster; without the ``cluster`` extra that is one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmax_core.errors import MeshError

if TYPE_CHECKING:
    from tmax_mesh_relay.cluster import Cluster
    from tmax_mesh_relay.hub import Hub


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
