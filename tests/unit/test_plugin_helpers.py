"""tmax_core.plugin.helpers, loaded lazily (PEP 562), serves every name it lists."""

from __future__ import annotations

import importlib

import pytest

from tmax_core.plugin import helpers


def test_all_is_exactly_the_lazy_map() -> None:
    assert sorted(helpers.__all__) == sorted(helpers._WHERE)
    assert len(set(helpers.__all__)) == len(helpers.__all__)


@pytest.mark.parametrize("name", helpers.__all__)
def test_every_name_resolves_from_its_home(name: str) -> None:
    home = importlib.import_module(helpers._WHERE[name])
    assert getattr(helpers, name) is getattr(home, name)


def test_from_import_of_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from tmax_core.plugin.helpers import *", namespace)
    assert set(helpers.__all__) <= set(namespace)


def test_dir_lists_every_name() -> None:
    assert dir(helpers) == sorted(helpers.__all__)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'no_such_helper'"):
        _ = helpers.no_such_helper  # type: ignore[attr-defined]
