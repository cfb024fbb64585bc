"""tmax-mesh core: identity, invites, friends, sealed messaging, local API and plugin host.

The SDK is importable from here (``from tmax_core import NodeClient``); it
is loaded on first use so that importing the package (every command line
does) stays as light as it was.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("tmax-mesh")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

_LAZY = {
    "NodeClient": "tmax_core.sdk",
    "AsyncNodeClient": "tmax_core.sdk",
    "MeshError": "tmax_core.errors",
    "NodeInfo": "tmax_core.results",
    "NodeStatus": "tmax_core.results",
    "FriendInfo": "tmax_core.results",
    "FriendStatus": "tmax_core.results",
    "InboxItem": "tmax_core.results",
    "MsgState": "tmax_core.results",
    "InviteInfo": "tmax_core.results",
    "CreatedInvite": "tmax_core.results",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Load the SDK names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tmax_core' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
