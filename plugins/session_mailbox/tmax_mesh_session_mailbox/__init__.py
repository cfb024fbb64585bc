"""tmax-mesh plugin ``session_mailbox``: local session mailboxes and a delivery sink into them.

Loaded by the core through the ``tmax_mesh`` entry point
``session_mailbox = "tmax_mesh_session_mailbox.plugin"``.
"""

import importlib.metadata

__version__ = importlib.metadata.version("tmax-mesh-session-mailbox")  # the one source is pyproject.toml
