"""Ready files: written atomically once every listener is bound, so scripts and
tests wait on a file instead of sleeping."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def remove_ready_file(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
