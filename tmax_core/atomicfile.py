"""Replacing a file atomically: readers see the old content or the new, never
a part, and after a crash (or power loss) the file is one or the other.

The new content goes to a temporary file beside the target, which is
fsynced, renamed over the target, and the directory fsynced. The temporary
file has an unguessable name and is created new without following a
symlink (``O_EXCL | O_NOFOLLOW``), so a link planted in a shared directory
cannot redirect the write; the rename replaces the name ``path``, never the
file a link there points to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, a new file of ``mode`` (less the umask).

    Raises the :class:`OSError` of the step that failed (nothing is left
    behind then); callers turn it into their own one-line error.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, _CREATE, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; best effort (some file systems
    cannot open or fsync a directory, and the data itself is already safe)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
