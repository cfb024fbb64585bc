"""Where a node keeps its state, and the path of its local API socket.

State dir precedence: ``--state-dir`` > ``TMAX_STATE_DIR`` >
``$XDG_STATE_HOME/tmax`` > ``~/.local/state/tmax`` (the last two from platformdirs).

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

from platformdirs.unix import Unix

from tmax_core.errors import StateDirError

STATE_DIR_ENV = "TMAX_STATE_DIR"
SOCKET_ENV = "TMAX_NODE_SOCKET"
APP_NAME = "tmax"
SOCKET_NAME = "node.sock"
MAX_SOCKET_PATH_BYTES = 107


log = logging.getLogger("tmax_mesh.statedir")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def resolve_state_dir(cli_value: str | None) -> Path:
    """The state dir to use (absolute, not created; see :func:`ensure_state_dir`).

    The default is platformdirs' XDG rule (``XDG_STATE_HOME`` only when it is
    an absolute path) on every OS, not the platform's native folder: 0.1 kept
    state in ``~/.local/state/tmax`` on macOS too, and a node whose state dir
    moved would start as a new identity.
    """
    if cli_value:
        return Path(cli_value).expanduser().absolute()
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV]).expanduser().absolute()
    try:
        return Unix(APP_NAME).user_state_path
    except RuntimeError as exc:  # no usable home directory
        raise StateDirError(f"no default state dir ({exc}); use --state-dir or {STATE_DIR_ENV}") from None


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
