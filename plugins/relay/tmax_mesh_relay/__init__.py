"""tmax-mesh plugin ``relay``: relay host (tmax-host) and the node's relay transport.

Loaded by the core through the ``tmax_mesh`` entry point ``relay = "tmax_mesh_relay.plugin"``.
"""

import importlib.metadata

__version__ = importlib.metadata.version("tmax-mesh-relay")  # the one source is pyproject.toml
