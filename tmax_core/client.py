"""The local API clients with results in the JSON shapes of the command-line
contract (DESIGN §14): what ``tmax-mesh`` prints with ``--json``.

The CLI uses :class:`JsonNodeClient`; new code uses the typed SDK,
``from tmax_core import NodeClient`` (:mod:`tmax_core.sdk`).

docs/cli.md and docs/sdk.md promised scripts of 0.1 and 0.2 that
``NodeClient`` and ``AsyncNodeClient`` imported from this module return dicts,
so those two names still resolve to the JSON clients, with a
:class:`DeprecationWarning`: the same name meant two different clients.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from tmax_core.results import as_json, body_for_json
from tmax_core.sdk import AsyncNodeClient as _AsyncTypedClient
from tmax_core.sdk import NodeClient as _TypedClient
from tmax_core.sdk import node_socket

__all__ = [
    "AsyncJsonNodeClient",
    "JsonNodeClient",
    "body_for_json",
    "node_socket",
]


class JsonNodeClient(_TypedClient):
    """:class:`tmax_core.sdk.NodeClient` with results as JSON-shaped dicts."""

    def _present(self, value: Any, shape: Callable[[Any], Any] | None) -> Any:
        return (shape or as_json)(value)


class AsyncJsonNodeClient(_AsyncTypedClient):
    """:class:`tmax_core.sdk.AsyncNodeClient` with results as JSON-shaped dicts."""

    def _present(self, value: Any, shape: Callable[[Any], Any] | None) -> Any:
        return (shape or as_json)(value)


_DEPRECATED = {"NodeClient": JsonNodeClient, "AsyncNodeClient": AsyncJsonNodeClient}
"""The 0.2 names of the JSON clients here, kept for scripts (DESIGN §14: only ever added to)."""


def __getattr__(name: str) -> type:
    """Resolve the deprecated 0.2 names (PEP 562), warning where they are used."""
    client = _DEPRECATED.get(name)
    if client is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"tmax_core.client.{name} is deprecated: use tmax_core.client.{client.__name__} "
        f"for dict results, or tmax_core.{name} for typed ones",
        DeprecationWarning,
        stacklevel=2,
    )
    return client
