"""Print the third-party runtime requirements of the core and the four bundled
plugins, one a line, as their pyproject.toml files declare them (their own
``tmax-mesh*`` requirements left out). scripts/setup.sh --dev downloads these
into .venv/wheelhouse for tests/e2e/test_packaging.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def third_party_requirements() -> list[str]:
    """Each distinct requirement, in the order the files list them."""
    found: dict[str, None] = {}
    for path in [ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))]:
        for req in tomllib.loads(path.read_text())["project"]["dependencies"]:
            if not req.startswith("tmax-mesh"):
                found[req] = None
    return list(found)


if __name__ == "__main__":
    print(*third_party_requirements(), sep="\n")
