"""``tmax-mesh plugins install|uninstall NAME``: pip, run as ``sys.executable
-m pip``, so a plugin lands in the environment tmax-mesh itself runs in (a
pipx venv, a project venv), as ``llm install`` does.

The project's plugins have short names (``relay``, ``direct``,
``session_mailbox``, ``ratelimit``); any other name is given to pip as is
(a distribution name, a requirement such as ``tmax-mesh-foo>=1``, a wheel
or a directory).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from tmax_core.errors import MeshError, UsageError

DISTRIBUTIONS = {
    "relay": "tmax-mesh-relay",
    "direct": "tmax-mesh-direct",
    "session_mailbox": "tmax-mesh-session-mailbox",
    "session-mailbox": "tmax-mesh-session-mailbox",
    "ratelimit": "tmax-mesh-ratelimit",
}


def requirement(name: str) -> str:
    """What pip is given for ``name``: the distribution of a short name, else
    ``name``. A name is never a pip option (``--index-url=...`` from a script's
    untrusted input would change where pip downloads from)."""
    if not name.strip() or name.lstrip().startswith("-"):
        raise UsageError(f"{name!r} is not a plugin name, requirement, wheel or directory")
    return DISTRIBUTIONS.get(name, name)


def pip_argv(
    action: str, names: Sequence[str], *, upgrade: bool = False, editable: bool = False
) -> list[str]:
    """The pip command line for ``install`` or ``uninstall`` of ``names``."""
    reqs = [requirement(n) for n in names]
    if action == "uninstall":
        return [sys.executable, "-m", "pip", "uninstall", "--yes", *reqs]
    flags = ["--upgrade"] if upgrade else []
    if editable:
        reqs = [arg for r in reqs for arg in ("--editable", r)]
    return [sys.executable, "-m", "pip", "install", *flags, *reqs]


def run_pip(argv: list[str]) -> None:
    """Run pip with its output on stderr (stdout is this command's result);
    a failure is one :class:`MeshError` line (pip has said why above it)."""
    try:
        done = subprocess.run(argv, stdout=sys.stderr, check=False)
    except OSError as err:
        raise MeshError(f"cannot run pip: {err}", code="pip") from None
    if done.returncode != 0:
        raise MeshError(f"pip {argv[3]} failed (exit {done.returncode}); see its output above", code="pip")
