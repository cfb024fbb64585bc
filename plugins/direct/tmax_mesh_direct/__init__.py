"""tmax-mesh plugin ``direct``: rendezvous-assisted direct connections between nodes.

Loaded by the core through the ``tmax_mesh`` entry point ``direct = "tmax_mesh_direct.plugin"``.
"""

__version__ = "0.1.0"
