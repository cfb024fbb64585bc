"""Where a node keeps its state, and the path of its local API socket.

State dir precedence: ``--state-dir`` > ``TMAX_STATE_DIR`` >
``$XDG_STATE_HOME/tmax`` > ``~/.local/state/tmax``.

Socket precedence: ``--socket`` > ``TMAX_NODE_SOCKET`` > ``STATE_DIR/node.sock``.
Unix socket paths are limited to 107 bytes (``sun_path`` is 108 bytes with
the terminating NUL); a longer path is a :class:`StateDirError` that says
how to work around it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from tmax_core.errors import StateDirError

STATE_DIR_ENV = "TMAX_STATE_DIR"
SOCKET_ENV = "TMAX_NODE_SOCKET"
APP_NAME = "tmax"
SOCKET_NAME = "node.sock"
MAX_SOCKET_PATH_BYTES = 107


log = logging.getLogger("tmax_mesh.statedir")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def resolve_state_dir(cli_value: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The state dir to use (absolute, not created; see :func:`ensure_state_dir`).

    ``XDG_STATE_HOME`` is honoured only when it is an absolute path, as the
    XDG base directory spec requires (this is also what ``platformdirs``
    does on Linux; we implement the rule so it is the same on every OS).
    """
    env = _env(env)
    if cli_value:
        return Path(cli_value).expanduser().absolute()
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser().absolute()
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_NAME
    return Path.home() / ".local" / "state" / APP_NAME


def ensure_state_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700, parents as needed) or check the existing one.

    Raises :class:`StateDirError` (one line naming the path) if it exists but
    is not a directory or is not writable, or cannot be created.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise StateDirError(f"state dir {path} exists but is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StateDirError(f"state dir {path} is not writable")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "state dir %s is accessible by other users (mode %03o); run `chmod 700 %s`", path, mode, path
            )
        return path
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise StateDirError(f"cannot create state dir {path}: {exc.strerror or exc}") from exc
    return path


def socket_path(state_dir: Path, cli_value: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The local API socket path; raises :class:`StateDirError` if too long."""
    env = _env(env)
    if cli_value:
        path = Path(cli_value).expanduser().absolute()
        origin = "--socket"
    elif env.get(SOCKET_ENV):
        path = Path(env[SOCKET_ENV]).expanduser().absolute()
        origin = SOCKET_ENV
    else:
        path = Path(state_dir) / SOCKET_NAME
        origin = "the state dir"
    size = len(os.fsencode(str(path)))
    if size > MAX_SOCKET_PATH_BYTES:
        raise StateDirError(
            f"socket path {path} (from {origin}) is {size} bytes, too long for a Unix socket "
            f"(max {MAX_SOCKET_PATH_BYTES}); use --socket or {SOCKET_ENV} to choose a shorter path"
        )
    return path


__all__ = [
    "MAX_SOCKET_PATH_BYTES",
    "SOCKET_ENV",
    "STATE_DIR_ENV",
    "ensure_state_dir",
    "resolve_state_dir",
    "socket_path",
]
