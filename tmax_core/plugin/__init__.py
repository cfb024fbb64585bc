"""Plugin system: hook specifications (:mod:`.spec`) and the manager (:mod:`.manager`)."""

import pluggy

PROJECT = "tmax_mesh"
"""One name everywhere: the hook marker project name and the entry-point group."""

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
