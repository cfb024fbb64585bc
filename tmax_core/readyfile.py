"""Ready files: written atomically once every listener is bound, so scripts and
tests wait on a file instead of sleeping.

They often live in a directory others can write to (``/tmp``), so nothing
here follows a symlink: the temporary file has an unguessable name and is
created new (``O_EXCL | O_NOFOLLOW``), a ready-file path that is a symlink is
refused, and the rename replaces a name, never the file a link points to.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from tmax_core.errors import MeshError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` (temp file + rename); a clear
    :class:`MeshError` if that is not possible."""
    if path.is_symlink():
        raise MeshError(
            f"the ready file {path} is a symlink; refusing to write through it", code="ready_file"
        )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, _CREATE, 0o644)
    except OSError as err:
        raise MeshError(f"cannot write the ready file {path}: {err.strerror}", code="ready_file") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise MeshError(f"cannot write the ready file {path}: {err.strerror}", code="ready_file") from None


def remove_ready_file(path: Path | None) -> None:
    """Remove the ready file (a symlink there is not ours: left alone)."""
    if path is not None and not path.is_symlink():
        path.unlink(missing_ok=True)
