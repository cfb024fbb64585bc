"""tmax-mesh plugin ``ratelimit``: per-peer and per-source token buckets at ingress.

Loaded by the core through the ``tmax_mesh`` entry point ``ratelimit = "tmax_mesh_ratelimit.plugin"``.
"""

import importlib.metadata

__version__ = importlib.metadata.version("tmax-mesh-ratelimit")  # the one source is pyproject.toml
