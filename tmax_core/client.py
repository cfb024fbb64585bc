"""The local API clients with results in the JSON shapes of the command-line
contract (DESIGN §14): what ``tmax-mesh`` prints with ``--json``.

The CLI uses :class:`JsonNodeClient`. Scripts written for 0.2 import
``NodeClient`` and ``AsyncNodeClient`` from this module and index their
results as dicts, so here those names stay the JSON clients; new code uses
the typed SDK, ``from tmax_core import NodeClient`` (:mod:`tmax_core.sdk`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tmax_core.results import as_json, body_for_json
from tmax_core.sdk import AsyncNodeClient as _AsyncTypedClient
from tmax_core.sdk import NodeClient as _TypedClient
from tmax_core.sdk import node_socket

__all__ = [
    "AsyncJsonNodeClient",
    "AsyncNodeClient",
    "JsonNodeClient",
    "NodeClient",
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


NodeClient = JsonNodeClient  # the 0.2 name in this module (DESIGN §14: only ever added to)
AsyncNodeClient = AsyncJsonNodeClient
