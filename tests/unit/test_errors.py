"""``error_for_code``: a code carried across the local API comes back as its class,
and the code -> class table is the classes themselves, so the two cannot drift."""

from __future__ import annotations

import types

import pytest

from tmax_core.errors import (
    EnvelopeError,
    InviteError,
    InviteReason,
    MeshError,
    NodeNotRunning,
    NotFound,
    error_for_code,
)
from tmax_mesh_relay.clusterstart import ClusterError


def _subclasses(cls: type[MeshError]) -> list[type[MeshError]]:
    found: list[type[MeshError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _with_own_code() -> list[type[MeshError]]:
    """Every subclass the code base defines (not this module) that sets its own ``code``."""
    return [cls for cls in _subclasses(MeshError) if "code" in vars(cls) and cls.__module__ != __name__]


def test_every_subclass_with_a_code_round_trips() -> None:
    classes = _with_own_code()
    assert NotFound in classes and ClusterError in classes  # the walk sees core and plugin classes
    for cls in classes:
        if cls is EnvelopeError:  # its code is a Reason, which names no one class
            continue
        err = error_for_code(cls.code, "boom")
        assert type(err) is cls, cls
        assert (err.code, str(err)) == (cls.code, "boom")


def test_every_invite_reason_is_an_invite_error_keeping_its_code() -> None:
    codes = [value for name, value in vars(InviteReason).items() if name.isupper()]
    assert len(codes) >= 10
    for code in codes:
        err = error_for_code(code, "bad invite")
        assert type(err) is InviteError and err.code == code


def test_an_envelope_reason_or_an_unknown_code_is_a_plain_mesh_error() -> None:
    for code in (EnvelopeError.code, "bad_signature", "no_such_code"):
        err = error_for_code(code, "nope")
        assert type(err) is MeshError and err.code == code and str(err) == "nope"


def test_a_class_defined_later_is_found_by_its_code() -> None:
    class LateError(MeshError):
        code = "test_errors_late"

    assert type(error_for_code("test_errors_late", "x")) is LateError


def test_a_subclass_that_keeps_its_parents_code_does_not_take_it_over() -> None:
    class NarrowNotFound(NotFound):
        pass

    assert type(error_for_code(NotFound.code, "x")) is NotFound


@pytest.mark.parametrize(
    ("keywords", "body", "owner", "owned"),
    [
        ({}, {"code": NotFound.code}, NotFound, NotFound.code),
        ({}, {"code": "invite_new_reason"}, InviteError, "invite_new_reason"),
        ({"code_prefix": "invite_x"}, {}, InviteError, "invite_xy"),
        ({"code_prefix": "node_"}, {}, NodeNotRunning, NodeNotRunning.code),
    ],
)
def test_a_later_claim_on_a_taken_code_leaves_it_with_its_first_class(
    keywords: dict[str, str], body: dict[str, str], owner: type[MeshError], owned: str
) -> None:
    clash = types.new_class("Clash", (MeshError,), keywords, lambda namespace: namespace.update(body))
    assert type(error_for_code(owned, "x")) is owner
    claimed = body.get("code") or keywords["code_prefix"] + "y"
    assert type(error_for_code(claimed, "x")) is not clash  # the later class claimed nothing
