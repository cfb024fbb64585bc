"""Configuration: declared keys, the TOML file, environment and CLI overrides.

Keys are dotted (``node.peer_listen``) and declared by the core and plugins
through the historic ``tmax_add_config(registry)`` hook (see
:func:`build_registry`). The file is TOML with one table per namespace::

    [node]
    peer_listen = "0.0.0.0:7400"

Precedence, highest first: CLI flag (:meth:`Config.override`) > environment
(``TMAX_MESH_<KEY>``, dots and dashes as underscores, e.g.
``TMAX_MESH_NODE_PEER_LISTEN``) > file > default. See docs/config.md.

The same machinery serves ``tmax-host``: a registry with another environment
prefix (``TMAX_HOST_``) and plain, un-namespaced option names (see
``tmax_mesh_relay.host``).

Supported types: ``str``, ``int``, ``float``, ``bool`` and ``list`` (a list of
scalars). Durations are ``str`` keys validated by :func:`validate_duration`
(``30s``, ``15m``, ``24h``, ``7d``); read them in seconds with
:meth:`Config.get_duration_ms`.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomli_w

from tmax_core.atomicfile import write_atomic
from tmax_core.durations import parse_duration_ms
from tmax_core.errors import ConfigError, UsageError

log = logging.getLogger("tmax_mesh.config")

CONFIG_ENV = "TMAX_MESH_CONFIG"
"""Environment variable naming the config file (below ``--config``)."""

ENV_PREFIX = "TMAX_MESH_"
CONFIG_FILE_NAME = "config.toml"
SOURCES = ("default", "file", "env", "cli")

# Environment variables with the TMAX_MESH_ prefix that are not config keys.
RESERVED_ENV = frozenset({CONFIG_ENV, "TMAX_MESH_DISABLE_PLUGINS"})

BUNDLED_PLUGINS = frozenset({"relay", "direct", "session_mailbox", "ratelimit"})
"""Plugins shipped with tmax-mesh: a config key in one of their namespaces is
known even when that plugin is not installed (ignored then, not an error)."""

_TYPES: tuple[type, ...] = (str, int, float, bool, list)
_NAME = r"[a-z][a-z0-9_-]*"
_KEY_RE = re.compile(rf"^{_NAME}(\.{_NAME})+$")
_PLAIN_KEY_RE = re.compile(rf"^{_NAME}$")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


# --------------------------------------------------------------------------- helpers


def validate_duration(value: str) -> None:
    """A ``validate`` function for duration keys."""
    try:
        parse_duration_ms(value)
    except UsageError as err:
        raise ValueError(str(err)) from None


def validate_positive(value: float) -> None:
    """A ``validate`` function for numbers that must be > 0."""
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


def validate_host_port(value: str) -> None:
    """A ``validate`` function for ``HOST:PORT`` (empty string allowed = off)."""
    if value == "":
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")


def is_wildcard_host(host: str) -> bool:
    """``0.0.0.0``, ``::`` (bracketed or not) or empty: a listen address, not dialable as written."""
    return host.strip("[]") in ("", "0.0.0.0", "::")


def validate_endpoints(value: list[Any]) -> None:
    """A ``validate`` function for a list of dialable ``HOST:PORT`` (port 1-65535)."""
    for item in value:
        if not isinstance(item, str) or item == "":
            raise ValueError(f"{item!r} is not HOST:PORT")
        validate_host_port(item)
        if int(item.rpartition(":")[2]) == 0:
            raise ValueError(f"{item!r}: port 0 cannot be dialled")


def env_var_for(key: str, prefix: str = ENV_PREFIX) -> str:
    """``node.peer_listen`` -> ``TMAX_MESH_NODE_PEER_LISTEN``."""
    return prefix + key.upper().replace(".", "_").replace("-", "_")


def _type_name(t: type) -> str:
    return t.__name__


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ConfigKey:
    """One declared configuration key."""

    key: str
    type: type
    default: Any
    help: str
    env_var: str
    choices: tuple[Any, ...] | None = None
    validate: Callable[[Any], None] | None = None
    metavar: str | None = None
    """How a command-line flag for this key names its value (``HOST:PORT``)."""

    @property
    def type_name(self) -> str:
        return _type_name(self.type)


class ConfigRegistry:
    """The declared keys. Plugins call :meth:`add` from ``tmax_add_config``.

    ``inactive_plugins`` maps a plugin name to why it is not loaded
    (``"disabled"``, ``"failed to load"``, ``"not installed"``): a config file
    may hold keys in its namespace, which are then ignored, not an error.
    ``env_prefix`` and ``namespaced=False`` (plain names like ``listen``, no
    dots) let another program (``tmax-host``) use the same machinery.
    """

    def __init__(
        self,
        inactive_plugins: Mapping[str, str] | None = None,
        *,
        env_prefix: str = ENV_PREFIX,
        namespaced: bool = True,
    ) -> None:
        self._keys: dict[str, ConfigKey] = {}
        self._env_names: dict[str, str] = {}
        self.inactive_plugins: Mapping[str, str] = dict(inactive_plugins or {})
        self.env_prefix = env_prefix
        self._key_re = _KEY_RE if namespaced else _PLAIN_KEY_RE

    def add(
        self,
        key: str,
        type: type,
        default: Any,
        help: str,
        *,
        choices: Iterable[Any] | None = None,
        validate: Callable[[Any], None] | None = None,
        metavar: str | None = None,
    ) -> ConfigKey:
        """Declare ``key``. ``validate(value)`` raises ``ValueError`` to reject a value.

        Raises :class:`ConfigError` for a malformed or duplicate key, an
        unsupported type or a default that fails its own checks.
        """
        if not isinstance(key, str) or not self._key_re.match(key):
            example = "'plugin.option'" if self._key_re is _KEY_RE else "'option'"
            raise ConfigError(f"invalid config key name {key!r}: use lowercase names like {example}")
        if key in self._keys:
            raise ConfigError(f"config key {key!r} is declared twice")
        if type not in _TYPES:
            raise ConfigError(f"config key {key!r}: unsupported type {type!r}")
        env = env_var_for(key, self.env_prefix)
        if env in RESERVED_ENV or env in self._env_names:
            other = self._env_names.get(env, env)
            raise ConfigError(f"config key {key!r} clashes with {other!r} (environment variable {env})")
        ck = ConfigKey(
            key=key,
            type=type,
            default=default,
            help=help,
            env_var=env,
            choices=tuple(choices) if choices is not None else None,
            validate=validate,
            metavar=metavar,
        )
        self._keys[key] = ck
        self._env_names[env] = key
        try:
            default = self.check(key, default)
        except ConfigError as exc:
            del self._keys[key]
            del self._env_names[env]
            raise ConfigError(f"config key {key!r}: bad default: {exc}") from None
        if default is not ck.default:
            ck = replace(ck, default=default)
            self._keys[key] = ck
        return ck

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[ConfigKey]:
        return iter(sorted(self._keys.values(), key=lambda k: k.key))

    def __len__(self) -> int:
        return len(self._keys)

    def names(self) -> list[str]:
        """All declared key names, sorted."""
        return sorted(self._keys)

    def get(self, key: str) -> ConfigKey:
        """The declaration of ``key``; :class:`ConfigError` if unknown."""
        try:
            return self._keys[key]
        except KeyError:
            raise self.unknown(key) from None

    def inactive_reason(self, key: str) -> str | None:
        """Why ``key``'s plugin is not loaded, or ``None`` if it is not such a key."""
        return self.inactive_plugins.get(key.partition(".")[0]) if "." in key else None

    def unknown(self, key: str) -> ConfigError:
        """The error for a key nothing declares: says when its plugin is not
        loaded, else suggests the closest declared key."""
        why = self.inactive_reason(key)
        if why is not None:
            plugin = key.partition(".")[0]
            return ConfigError(f"config key {key!r} belongs to plugin {plugin!r}, which is {why}")
        close = difflib.get_close_matches(key, self._keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(f"unknown config key {key!r}{hint}")

    def check(self, key: str, value: Any) -> Any:
        """Type-check and validate an already-typed ``value``; returns it normalised.

        ``int`` is accepted for ``float`` keys (converted); ``bool`` is never
        accepted as a number. Raises :class:`ConfigError`.
        """
        ck = self.get(key)
        t = ck.type
        ok: bool
        if t is bool:
            ok = isinstance(value, bool)
        elif t is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
                if not math.isfinite(value):
                    raise ConfigError(f"invalid value for {key}: must be a finite number")
        elif t is list:
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, (str, int, float, bool)) for v in value
            )
            if ok:
                value = list(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(
                f"invalid value for {key}: expected {ck.type_name}, got {_type_name(type(value))} {value!r}"
            )
        if ck.choices is not None:
            items = value if t is list else [value]
            for item in items:
                if item not in ck.choices:
                    allowed = ", ".join(str(c) for c in ck.choices)
                    raise ConfigError(f"invalid value for {key}: {item!r} is not one of: {allowed}")
        if ck.validate is not None:
            try:
                ck.validate(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"invalid value for {key}: {exc}") from None
        return value

    def parse_value(self, key: str, text: str) -> Any:
        """Parse a CLI/environment string for ``key`` and validate it.

        bool: ``true/false/yes/no/on/off/1/0``; list: a JSON list or
        comma-separated items (empty string = empty list); numbers as Python
        literals. Raises :class:`ConfigError`.
        """
        ck = self.get(key)
        t = ck.type
        value: Any
        try:
            if t is bool:
                low = text.strip().lower()
                if low in _TRUE:
                    value = True
                elif low in _FALSE:
                    value = False
                else:
                    raise ValueError("expected true or false")
            elif t is int:
                value = int(text.strip())
            elif t is float:
                value = float(text.strip())
            elif t is list:
                stripped = text.strip()
                if stripped.startswith("["):
                    value = json.loads(stripped)
                    if not isinstance(value, list):
                        raise ValueError("expected a JSON list")
                else:
                    value = [item.strip() for item in stripped.split(",") if item.strip()]
            else:
                value = text
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            msg = str(exc).splitlines()[0] if str(exc) else "cannot parse"
            raise ConfigError(f"invalid value for {key}: {text!r} ({ck.type_name}: {msg})") from None
        return self.check(key, value)


# --------------------------------------------------------------------------- file parsing


def read_toml(path: Path) -> dict[str, Any] | None:
    """The parsed document, or ``None`` if the file does not exist.
    Raises :class:`ConfigError` (one line naming the file) for anything else."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8: {exc.reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None


def _flatten(
    doc: Mapping[str, Any], registry: ConfigRegistry, path: Path | None, prefix: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """``({key: checked value}, [keys of plugins that are not loaded])``.

    The second list is kept apart, not an error: one disabled, broken or
    uninstalled plugin must not stop the node (its keys stay in the file).
    """
    where = f"config file {path}" if path is not None else "config"
    out: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in doc.items():
        key = f"{prefix}{name}"
        if key in registry:
            try:
                out[key] = registry.check(key, value)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif isinstance(value, dict):
            values, more = _flatten(value, registry, path, prefix=f"{key}.")
            out.update(values)
            ignored.extend(more)
        elif registry.inactive_reason(key) is not None:
            ignored.append(key)
        else:
            raise ConfigError(f"{where}: {registry.unknown(key)}")
    return out, ignored


def _warn_ignored(path: Path | None, registry: ConfigRegistry, keys: list[str]) -> None:
    """One warning line per plugin whose keys the file sets but nothing reads."""
    by_plugin: dict[str, list[str]] = {}
    for key in keys:
        by_plugin.setdefault(key.partition(".")[0], []).append(key)
    for plugin, names in by_plugin.items():
        log.warning(
            "config file %s: %s ignored: plugin %r is not loaded (%s)",
            path,
            ", ".join(repr(n) for n in names),
            plugin,
            registry.inactive_plugins[plugin],
        )


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace the config file (mode 0600) atomically; a symlinked config file
    (say, kept with one's dotfiles) is written where the link points."""
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(target, data, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write config file {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _editing(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of the config file, so two
    ``config set`` runs at once cannot lose one of the changes. The lock is on
    the file's directory, since the file itself is replaced by each write (and
    a lock file would be one more file to leave behind)."""
    parent = Path(os.path.realpath(path)).parent
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError(f"cannot lock config file {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def set_value(path: Path, registry: ConfigRegistry, key: str, text: str) -> Any:
    """Set ``key`` to the parsed ``text`` in the config file; returns the value.

    The whole resulting file is validated before anything is written; on any
    error a :class:`ConfigError` is raised and the file is left untouched.
    The write is atomic (temp file + fsync + rename) with mode 0600. Comments
    and formatting of the existing file are not preserved.
    """
    path = Path(path)
    value = registry.parse_value(key, text)
    with _editing(path):
        return _set(path, registry, key, value)


def _set(path: Path, registry: ConfigRegistry, key: str, value: Any) -> Any:
    doc = read_toml(path) or {}
    _flatten(doc, registry, path)  # refuse to rewrite a file that is already invalid
    table = doc
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = table.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config file {path}: {part!r} is not a table")
        table = nxt
    table[parts[-1]] = value
    _flatten(doc, registry, path)
    _atomic_write(path, tomli_w.dumps(doc).encode("utf-8"))
    return value


def unset_value(path: Path, registry: ConfigRegistry, key: str) -> bool:
    """Remove ``key`` from the config file (back to its default or env value).

    Returns ``False`` (and writes nothing) if the file does not set it.
    Unknown keys raise :class:`ConfigError`. Empty tables are removed.
    """
    path = Path(path)
    registry.get(key)
    with _editing(path):
        return _unset(path, registry, key)


def _unset(path: Path, registry: ConfigRegistry, key: str) -> bool:
    doc = read_toml(path)
    if doc is None:
        return False
    _flatten(doc, registry, path)
    parts = key.split(".")
    chain: list[dict[str, Any]] = [doc]
    for part in parts[:-1]:
        nxt = chain[-1].get(part)
        if not isinstance(nxt, dict):
            return False
        chain.append(nxt)
    if parts[-1] not in chain[-1]:
        return False
    del chain[-1][parts[-1]]
    for depth in range(len(parts) - 1, 0, -1):
        if not chain[depth]:
            del chain[depth - 1][parts[depth - 1]]
    _atomic_write(path, tomli_w.dumps(doc).encode("utf-8"))
    return True


def config_path(state_dir: Path, cli_value: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``--config`` > ``TMAX_MESH_CONFIG`` > ``STATE_DIR/config.toml``."""
    env = os.environ if env is None else env
    if cli_value:
        return Path(cli_value).expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    return Path(state_dir) / CONFIG_FILE_NAME


def build_registry(pm: Any) -> ConfigRegistry:
    """A registry filled by every plugin's ``tmax_add_config`` (a historic hook:
    plugins registered later still add their keys to it).

    Keys of plugins that are not loaded are known as such (see
    :class:`ConfigRegistry`): bundled plugins that are not installed, then
    failed ones, then disabled ones (the last reason given wins).
    """
    inactive = {name: "not installed" for name in BUNDLED_PLUGINS if pm.get_plugin(name) is None}
    inactive.update({f.name: "failed to load" for f in getattr(pm, "failed", ())})
    inactive.update(dict.fromkeys(getattr(pm, "blocked_names", ()), "disabled"))
    registry = ConfigRegistry(inactive)
    pm.hook.tmax_add_config.call_historic(kwargs={"registry": registry})
    return registry


# --------------------------------------------------------------------------- Config


class Config:
    """Effective configuration values with where each one came from."""

    def __init__(self, registry: ConfigRegistry, path: Path | None = None) -> None:
        self.registry = registry
        self.path = path
        self._values: dict[str, Any] = {}
        self._sources: dict[str, str] = {}

    @classmethod
    def load(
        cls, path: Path | None, registry: ConfigRegistry, env: Mapping[str, str] | None = None
    ) -> Config:
        """Defaults, then the TOML file at ``path`` (missing file = empty), then
        ``TMAX_MESH_*`` environment variables. Raises :class:`ConfigError`."""
        path = Path(path) if path is not None else None
        doc = read_toml(path) if path is not None else None
        return cls.from_document(registry, doc or {}, path, env)

    @classmethod
    def from_document(
        cls,
        registry: ConfigRegistry,
        doc: Mapping[str, Any],
        path: Path | None,
        env: Mapping[str, str] | None = None,
    ) -> Config:
        """Defaults, then ``doc`` (an already parsed file, read from ``path``),
        then the registry's environment variables. Keys of plugins that are
        not loaded are warned about (once each load) and ignored. Raises
        :class:`ConfigError`."""
        env = os.environ if env is None else env
        cfg = cls(registry, path)
        for ck in registry:
            cfg._values[ck.key] = ck.default
            cfg._sources[ck.key] = "default"
        values, ignored = _flatten(doc, registry, path)
        _warn_ignored(path, registry, ignored)
        for key, value in values.items():
            cfg._values[key] = value
            cfg._sources[key] = "file"
        for ck in registry:
            name = ck.env_var
            if name in env:
                try:
                    value = registry.parse_value(ck.key, env[name])
                except ConfigError as exc:
                    raise ConfigError(f"environment variable {name}: {exc}") from None
                cfg._values[ck.key] = value
                cfg._sources[ck.key] = "env"
        return cfg

    def get(self, key: str) -> Any:
        """The effective value; :class:`ConfigError` for an unknown key."""
        self.registry.get(key)
        value = self._values.get(key, self.registry.get(key).default)
        return list(value) if isinstance(value, list) else value

    def get_duration_ms(self, key: str) -> int:
        """A duration key's value in milliseconds."""
        try:
            return parse_duration_ms(self.get(key))
        except UsageError as exc:
            raise ConfigError(f"invalid value for {key}: {exc}") from None

    def source(self, key: str) -> str:
        """``"default"``, ``"file"``, ``"env"`` or ``"cli"``."""
        self.registry.get(key)
        return self._sources.get(key, "default")

    def override(self, key: str, value: Any) -> None:
        """Apply a CLI flag (highest precedence). A ``str`` for a non-``str``
        key is parsed like :meth:`ConfigRegistry.parse_value`."""
        ck = self.registry.get(key)
        if isinstance(value, str) and ck.type is not str:
            value = self.registry.parse_value(key, value)
        else:
            value = self.registry.check(key, value)
        self._values[key] = value
        self._sources[key] = "cli"

    def as_dict(self) -> dict[str, Any]:
        """``{key: value}`` for every declared key, sorted by key."""
        return {ck.key: self.get(ck.key) for ck in self.registry}

    def describe(self) -> list[dict[str, Any]]:
        """``[{"key", "value", "source", "type", "default", "help"}]`` for ``config show``."""
        return [
            {
                "key": ck.key,
                "value": self.get(ck.key),
                "source": self.source(ck.key),
                "type": ck.type_name,
                "default": ck.default,
                "help": ck.help,
            }
            for ck in self.registry
        ]


__all__ = [
    "BUNDLED_PLUGINS",
    "CONFIG_ENV",
    "Config",
    "ConfigKey",
    "ConfigRegistry",
    "build_registry",
    "config_path",
    "env_var_for",
    "is_wildcard_host",
    "read_toml",
    "set_value",
    "unset_value",
    "validate_duration",
    "validate_endpoints",
    "validate_host_port",
    "validate_positive",
]
