"""tmax-mesh plugin ``session_mailbox``: local session mailboxes and a delivery sink into them.

Loaded by the core through the ``tmax_mesh`` entry point
``session_mailbox = "tmax_mesh_session_mailbox.plugin"``.
"""

__version__ = "0.1.0"
