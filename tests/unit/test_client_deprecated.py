"""The 0.2 names of the dict clients in tmax_core.client still work, with a warning."""

from __future__ import annotations

import pytest

import tmax_core.client
from tmax_core.client import AsyncJsonNodeClient, JsonNodeClient


@pytest.mark.parametrize(
    ("name", "client"), [("NodeClient", JsonNodeClient), ("AsyncNodeClient", AsyncJsonNodeClient)]
)
def test_old_name_warns_and_is_the_json_client(name: str, client: type) -> None:
    with pytest.warns(
        DeprecationWarning, match=rf"tmax_core\.client\.{name} is deprecated.*{client.__name__}"
    ):
        assert getattr(tmax_core.client, name) is client


def test_from_import_of_the_old_name_warns() -> None:
    with pytest.warns(DeprecationWarning, match="NodeClient is deprecated"):
        from tmax_core.client import NodeClient
    assert NodeClient is JsonNodeClient


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nodeclient'"):
        _ = tmax_core.client.Nodeclient  # type: ignore[attr-defined]


def test_old_names_are_not_exported() -> None:
    assert "NodeClient" not in tmax_core.client.__all__
    assert "AsyncNodeClient" not in tmax_core.client.__all__
