"""Plugin system: hook specifications (:mod:`.spec`), the manager (:mod:`.manager`),
the node's public surface (:class:`NodeAPI`) and the helpers plugins import
(:mod:`.helpers`)."""

import pluggy

from tmax_core.plugin.nodeapi import NodeAPI

PROJECT = "tmax_mesh"
"""One name everywhere: the hook marker project name and the entry-point group."""

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "NodeAPI", "hookimpl", "hookspec"]
