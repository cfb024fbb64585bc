"""tmax-mesh plugin ``ratelimit``: per-peer and per-source token buckets at ingress.

Loaded by the core through the ``tmax_mesh`` entry point ``ratelimit = "tmax_mesh_ratelimit.plugin"``.
"""

__version__ = "0.1.0"
