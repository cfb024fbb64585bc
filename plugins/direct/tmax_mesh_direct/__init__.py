"""tmax-mesh plugin ``direct``: rendezvous-assisted direct connections between nodes.

Loaded by the core through the ``tmax_mesh`` entry point ``direct = "tmax_mesh_direct.plugin"``.
"""

import importlib.metadata

__version__ = importlib.metadata.version("tmax-mesh-direct")  # the one source is pyproject.toml
