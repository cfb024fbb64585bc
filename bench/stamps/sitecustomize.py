"""Timestamps along a message's path, for ``bench/latency_breakdown.py``.

Python imports ``sitecustomize`` at start-up from its path, so a node started
with this folder on ``PYTHONPATH`` and ``TMAX_STAMPS=DIR`` set records the
entry and exit of the send and receive path's functions (and when a
``DeliverStream`` message is written and read) with ``time.perf_counter_ns``
(``CLOCK_MONOTONIC``: one clock for every process on the machine), and
writes them to ``DIR/<pid>.stamps`` at exit. Without ``TMAX_STAMPS`` it does
nothing. Each stamp costs about a microsecond; they are kept in memory.
"""

from __future__ import annotations

import os

if os.environ.get("TMAX_STAMPS"):
    import atexit
    import functools
    import inspect
    import logging
    import time
    from collections.abc import AsyncIterator
    from pathlib import Path
    from typing import Any

    from tmax_core import envelope, outbox, peer, peerstream, sendqueue
    from tmax_core.api import NodeApiServicer
    from tmax_core.builtins import InboxSink
    from tmax_core.ingress import Ingress
    from tmax_core.node import Node
    from tmax_core.store import Store

    _stamps: list[tuple[int, str]] = []
    _stamp = _stamps.append
    _ns = time.perf_counter_ns

    def _write_stamps(directory: Path = Path(os.environ["TMAX_STAMPS"])) -> None:
        lines = (f"{t} {name}\n" for t, name in _stamps)
        (directory / f"{os.getpid()}.stamps").write_text("".join(lines))

    atexit.register(_write_stamps)

    def _wrap(owner: Any, attr: str, label: str) -> None:
        """Stamp ``label>`` when ``owner.attr`` is called and ``label<`` when it returns."""
        fn = getattr(owner, attr)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def stamped(*args: Any, **kwargs: Any) -> Any:
                _stamp((_ns(), label + ">"))
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _stamp((_ns(), label + "<"))

        else:

            @functools.wraps(fn)
            def stamped(*args: Any, **kwargs: Any) -> Any:
                _stamp((_ns(), label + ">"))
                try:
                    return fn(*args, **kwargs)
                finally:
                    _stamp((_ns(), label + "<"))

        setattr(owner, attr, stamped)

    WRAPPED = {
        NodeApiServicer: ["MsgSend"],
        sendqueue.SendQueue: ["submit"],
        outbox.Outbox: ["submit_many", "_seal", "_attempt", "_record"],
        Store: ["outbox_put_many", "seen_check_many", "inbox_insert_within_quota", "record_received_many"],
        Node: ["transports_for", "handle_envelope_batch", "deliver_many"],
        peerstream.PeerStream: ["deliver"],
        Ingress: ["process", "_precheck"],
        envelope: ["seal", "parse", "verify", "open_content", "make_ack_batch", "verify_ack_batch"],
        InboxSink: ["deliver_many"],
        logging.StreamHandler: ["emit"],
    }
    LABELS = {"stream.write", "stream.answer", "stream.read"}
    """Everything stamped: ``LABEL>`` and ``LABEL<`` for a wrapped call, ``LABEL`` for the stream's."""
    for owner, attrs in WRAPPED.items():
        for attr in attrs:
            label = f"{owner.__name__.rpartition('.')[2]}.{attr}"
            _wrap(owner, attr, label)
            LABELS.add(label)

    class _StampedCall:
        """A ``DeliverStream`` call whose writes and reads are stamped."""

        def __init__(self, call: Any) -> None:
            self._call = call

        async def write(self, request: bytes) -> None:
            _stamp((_ns(), "stream.write>"))
            await self._call.write(request)

        async def read(self) -> Any:
            answer = await self._call.read()
            _stamp((_ns(), "stream.answer"))
            return answer

        def cancel(self) -> bool:
            return self._call.cancel()

    _peer_stream_init = peerstream.PeerStream.__init__

    def _stamped_init(self: peerstream.PeerStream, call: Any) -> None:
        _peer_stream_init(self, _StampedCall(call))

    peerstream.PeerStream.__init__ = _stamped_init  # type: ignore[method-assign]

    _serve_stream = peerstream.serve_stream

    async def _stamped_serve_stream(node: Any, requests: Any, context: Any, source: Any) -> None:
        async def stamped() -> AsyncIterator[bytes]:
            async for raw in requests:
                _stamp((_ns(), "stream.read"))
                yield raw

        await _serve_stream(node, stamped(), context, source)

    peer.serve_stream = _stamped_serve_stream
