"""Small conversions shared by the tables of ``state.db``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from tmax_core.model import RateLimit

_CHUNK = 500  # ids per "IN (...)" query

T = TypeVar("T")


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices short enough for one ``IN (...)`` list each."""
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def marks(items: Sequence[object]) -> str:
    """The ``?,?,…`` placeholders for ``items``."""
    return ",".join("?" * len(items))


def nid(node_id: bytes) -> str:
    """A node id as error messages write it."""
    return "0x" + bytes(node_id).hex()


def dump_list(items: Iterable[str]) -> str:
    return json.dumps(list(items))


def rate_columns(rl: RateLimit | None) -> tuple[float | None, int | None]:
    return (rl.rate_per_s, rl.burst) if rl is not None else (None, None)


def load_rate(rate: float | None, burst: int | None) -> RateLimit | None:
    return RateLimit(rate_per_s=rate, burst=burst) if rate is not None and burst is not None else None
