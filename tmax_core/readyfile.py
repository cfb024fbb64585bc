"""Ready files: written atomically once every listener is bound, so scripts and
tests wait on a file instead of sleeping.

They often live in a directory others can write to (``/tmp``), so nothing
here follows a symlink: a ready-file path that is a symlink is refused, and
:func:`~tmax_core.atomicfile.write_atomic` neither follows one at its
temporary name nor writes through one at ``path``. Nor may other users read
one (mode 0600): the daemon and whoever waits on the file are the same user,
and what a ready file shows (a host's cluster, say) is nobody else's business.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tmax_core.atomicfile import write_atomic
from tmax_core.errors import MeshError


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` (temp file + rename); a clear
    :class:`MeshError` if that is not possible."""
    if path.is_symlink():
        raise MeshError(
            f"the ready file {path} is a symlink; refusing to write through it", code="ready_file"
        )
    try:
        write_atomic(path, (json.dumps(data) + "\n").encode(), 0o600)
    except OSError as err:
        raise MeshError(f"cannot write the ready file {path}: {err.strerror}", code="ready_file") from None


def remove_ready_file(path: Path | None) -> None:
    """Remove the ready file (a symlink there is not ours: left alone)."""
    if path is not None and not path.is_symlink():
        path.unlink(missing_ok=True)
