"""Plugin manager factory: hook specs, core built-ins and entry-point plugins.

Use :func:`create_plugin_manager` to get a fresh manager (there is no
module-level singleton, so tests can build as many as they like).

Loading rules (DESIGN §4):

* The core built-ins (:mod:`tmax_core.builtins`) are registered first under
  the name ``core``; they cannot be disabled.
* Third-party plugins are the entry points of group ``tmax_mesh``. They are
  loaded **one by one**, sorted by name: a plugin that fails to import, that
  names something that is not a module/object, that pluggy refuses (unknown
  hook arguments, duplicate name), or that implements a hook no spec names
  (a misspelling; ``optionalhook`` ones aside) is logged as one warning line on
  the ``tmax_mesh.plugins`` logger, recorded in
  :attr:`TmaxPluginManager.failed` and skipped. The others still load.
* Names listed in ``TMAX_MESH_DISABLE_PLUGINS`` (comma-separated entry-point
  names) and in the ``disabled`` argument are blocked with
  :meth:`pluggy.PluginManager.set_blocked`: they are neither imported nor
  registered.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from tmax_core.plugin import PROJECT, spec

log = logging.getLogger("tmax_mesh.plugins")

ENTRY_POINT_GROUP = PROJECT
"""The entry-point group plugins declare (``[project.entry-points.tmax_mesh]``)."""

DISABLE_ENV = "TMAX_MESH_DISABLE_PLUGINS"
"""Environment variable: comma-separated entry-point names to block."""

CORE_NAME = "core"
"""Registration name of :mod:`tmax_core.builtins`."""

CORE_DISTRIBUTION = "tmax-mesh"


@dataclass(frozen=True)
class PluginInfo:
    """What we know about one registered plugin (from its entry point)."""

    name: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class PluginFailure:
    """One plugin that could not be loaded; ``error`` is one line."""

    name: str
    error: str
    distribution: str | None = None


class TmaxPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers where plugins came from.

    Attributes:
        plugin_info: registration name -> :class:`PluginInfo`, for the core
            built-ins (``core``) and every entry-point plugin that was
            registered.
        failed: one :class:`PluginFailure` per entry point that could not be
            loaded, in load order.
        blocked_names: the names blocked from ``TMAX_MESH_DISABLE_PLUGINS`` and
            the ``disabled`` argument.
    """

    def __init__(self, project_name: str = PROJECT) -> None:
        super().__init__(project_name)
        self.plugin_info: dict[str, PluginInfo] = {}
        self.failed: list[PluginFailure] = []
        self.blocked_names: set[str] = set()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _core_version() -> str | None:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _disabled_names(disabled: Iterable[str] | None, env: Mapping[str, str]) -> set[str]:
    names = {n.strip() for n in env.get(DISABLE_ENV, "").split(",")}
    names.update(n.strip() for n in (disabled or ()))
    names.discard("")
    return names


def _load_entry_point(pm: TmaxPluginManager, ep: importlib.metadata.EntryPoint) -> None:
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else None
    dist_version = dist.version if dist is not None else None
    try:
        if pm.has_plugin(ep.name):
            other = pm.plugin_info.get(ep.name)
            owner = other.distribution if other and other.distribution else "another plugin"
            raise ValueError(f"plugin name {ep.name!r} is already used by {owner}")
        plugin = ep.load()
        if plugin is None or isinstance(plugin, (str, bytes, int, float, bool)):
            raise TypeError(f"entry point {ep.value!r} is {plugin!r}, not a module or object")
        if pm.is_registered(plugin):
            raise ValueError(f"{ep.value!r} is already registered as plugin {pm.get_name(plugin)!r}")
        registered = pm.register(plugin, name=ep.name)
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            raise ValueError(f"no such hook: {', '.join(unknown)} (misspelled? see tmax-mesh plugins)")
    except Exception as exc:  # one broken plugin must not stop the others
        if ep.name not in pm.plugin_info and pm.get_plugin(ep.name) is not None:
            # Older pluggy versions may leave a half-registered plugin behind.
            pm.unregister(name=ep.name)
        failure = PluginFailure(name=ep.name, error=_one_line(exc), distribution=dist_name)
        pm.failed.append(failure)
        log.warning(
            "plugin %r (%s) failed to load and is skipped: %s",
            ep.name,
            dist_name or ep.value,
            failure.error,
        )
        return
    if registered is None:  # blocked between our check and register
        return
    pm.plugin_info[ep.name] = PluginInfo(name=ep.name, distribution=dist_name, version=dist_version)


def create_plugin_manager(
    *,
    load_entrypoints: bool = True,
    disabled: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> TmaxPluginManager:
    """Build a plugin manager with the hook specs, the core built-ins and plugins.

    ``load_entrypoints=False`` registers only the core built-ins (tests then
    register their own plugin objects). ``disabled`` adds entry-point names to
    block on top of ``TMAX_MESH_DISABLE_PLUGINS`` (read from ``env``, default
    ``os.environ``).
    """
    from tmax_core import builtins

    env = os.environ if env is None else env
    pm = TmaxPluginManager(PROJECT)
    pm.add_hookspecs(spec)
    pm.register(builtins, name=CORE_NAME)
    pm.plugin_info[CORE_NAME] = PluginInfo(CORE_NAME, CORE_DISTRIBUTION, _core_version())

    for name in sorted(_disabled_names(disabled, env)):
        if name == CORE_NAME:
            log.warning("the core built-ins cannot be disabled; ignoring %r in %s", name, DISABLE_ENV)
            continue
        pm.set_blocked(name)
        pm.blocked_names.add(name)

    if load_entrypoints:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            if pm.is_blocked(ep.name):
                log.debug("plugin %r is disabled", ep.name)
                continue
            _load_entry_point(pm, ep)
    return pm


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """The plugin's hookimpls that no hookspec names (unless marked
    ``optionalhook``): pluggy would call them never, silently. This is
    :meth:`pluggy.PluginManager.check_pending` for one plugin."""
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )


def _hooks_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    callers = pm.get_hookcallers(plugin) or []
    return sorted(c.name for c in callers)


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Registered plugins as ``[{"name", "version", "distribution", "hooks"}]``.

    The core built-ins come first (name ``core``), then the others by name.
    Plugins registered directly (not from an entry point) have ``version`` and
    ``distribution`` ``None``. ``hooks`` are the hook names implemented.
    """
    info: dict[str, PluginInfo] = getattr(pm, "plugin_info", {})
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        meta = info.get(name)
        rows.append(
            {
                "name": name,
                "version": meta.version if meta else None,
                "distribution": meta.distribution if meta else None,
                "hooks": _hooks_of(pm, plugin),
            }
        )
    rows.sort(key=lambda r: (r["name"] != CORE_NAME, r["name"]))
    return rows


def failed_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Entry points that failed to load, as ``[{"name", "error", "distribution"}]``."""
    return [
        {"name": f.name, "error": f.error, "distribution": f.distribution} for f in getattr(pm, "failed", [])
    ]


__all__ = [
    "CORE_NAME",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginInfo",
    "TmaxPluginManager",
    "create_plugin_manager",
    "failed_plugins",
    "list_plugins",
]
