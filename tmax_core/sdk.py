"""The Python SDK: :class:`NodeClient` (blocking) and :class:`AsyncNodeClient`
(asyncio), exported as ``from tmax_core import NodeClient, AsyncNodeClient``.

Results are the typed, frozen dataclasses of :mod:`tmax_core.results`;
errors are :class:`~tmax_core.errors.MeshError` subclasses (``err.code`` is
stable). :mod:`tmax_core.client` has the same clients with results in the
JSON shapes of the command-line contract. The methods are written once in
:class:`_Methods`; the blocking and asyncio clients only supply how an RPC's
reply is waited for, the JSON clients only ``_present``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from tmax_core.errors import ERROR_CODE_KEY, MeshError, NodeNotRunning, UsageError, error_for_code
from tmax_core.proto import node_pb2 as pb
from tmax_core.proto import node_pb2_grpc
from tmax_core.results import (
    CreatedInvite,
    FriendInfo,
    FriendStatus,
    InboxItem,
    InviteInfo,
    MsgState,
    NodeInfo,
    NodeStatus,
    as_json,
)
from tmax_core.statedir import resolve_state_dir, socket_path

DEFAULT_TIMEOUT_S = 30.0

__all__ = ["AsyncNodeClient", "NodeClient", "node_socket"]


def node_socket(state_dir: Path | str | None = None, socket: Path | str | None = None) -> Path:
    """The local API socket of the node, found as ``tmax-mesh`` finds it:
    ``socket`` > ``TMAX_NODE_SOCKET`` > ``STATE_DIR/node.sock``, the state dir
    being ``state_dir`` > ``TMAX_STATE_DIR`` > the XDG default."""
    return socket_path(
        resolve_state_dir(str(state_dir) if state_dir else None), str(socket) if socket else None
    )


def _error(err: grpc.RpcError, socket: Path) -> MeshError:
    code = dict(err.trailing_metadata() or ()).get(ERROR_CODE_KEY)
    if code is None and err.code() == grpc.StatusCode.UNAVAILABLE:
        return NodeNotRunning(
            f"no tmax-node is answering on {socket}; start one with `tmax-node --state-dir {socket.parent}`"
        )
    return error_for_code(code or err.code().name.lower(), err.details() or err.code().name)


def _send_request(
    to: str,
    body: bytes | None,
    text: str | None,
    scope: str,
    content_type: str,
    ttl_ms: int,
    reply_to: str,
) -> pb.MsgSendRequest:
    if (body is None) == (text is None):
        raise UsageError("give the message as body (bytes) or text (str), not both")
    if text is not None:
        body = text.encode("utf-8")
    if not isinstance(body, bytes | bytearray):
        raise UsageError(f"body must be bytes, not {type(body).__name__} (use text= for a str)")
    return pb.MsgSendRequest(
        to=to, body=bytes(body), scope=scope, content_type=content_type, ttl_ms=ttl_ms, reply_to=reply_to
    )


class _Methods:
    """The API, written once: each method builds its request and names the
    conversion of the reply.

    The clients supply how an RPC is waited for: ``_rpc(method, request,
    then, timeout=None)`` runs it and returns ``then(reply)``, blocking or as an
    awaitable (nothing is sent before it is awaited), and
    ``_send_and_wait(request, timeout_s)`` sends one message and waits for its
    final state. Results go through ``_present``: as is for the SDK clients, in
    their JSON shape for the JSON clients (``shape``, by default
    ``as_dict()``). Each method's docstring names the SDK result.
    """

    _rpc: Callable[..., Any]
    _send_and_wait: Callable[[pb.MsgSendRequest, float], Any]

    def _present(self, value: Any, shape: Callable[[Any], Any] | None) -> Any:
        return value

    def _call(
        self,
        method: str,
        request: Any,
        convert: Callable[[Any], Any],
        shape: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run RPC ``method`` and return ``convert(reply)`` through ``_present``
        (blocking, or as an awaitable)."""
        return self._rpc(method, request, lambda reply: self._present(convert(reply), shape), timeout)

    def node_info(self) -> Any:
        """-> :class:`NodeInfo`."""
        return self._call("NodeInfo", pb.Empty(), NodeInfo.from_pb)

    def node_status(self) -> Any:
        """-> :class:`NodeStatus`."""
        return self._call("NodeStatus", pb.Empty(), NodeStatus.from_pb)

    def invite_create(
        self,
        *,
        ttl_ms: int = 0,
        uses: int | None = None,
        scopes: Sequence[str] = (),
        relay_hosts: Sequence[str] = (),
        endpoints: Sequence[str] = (),
        alias: str = "",
        rate_limit: tuple[float, int] | None = None,
    ) -> Any:
        """-> :class:`CreatedInvite`. ``ttl_ms`` 0 = ``invites.default_ttl``."""
        req = pb.InviteCreateRequest(
            ttl_ms=ttl_ms,
            uses=uses or 0,
            uses_set=uses is not None,
            scopes=scopes,
            relay_hosts=relay_hosts,
            endpoints=endpoints,
            alias=alias,
            rate_limit=pb.RateLimit(rate_per_s=rate_limit[0], burst=rate_limit[1]) if rate_limit else None,
        )
        return self._call("InviteCreate", req, CreatedInvite.from_pb)

    def invite_accept(self, token: str, alias: str | None = None) -> Any:
        """-> :class:`FriendInfo`: the inviter, now a friend."""
        req = pb.InviteAcceptRequest(token=token, alias=alias or "")
        return self._call("InviteAccept", req, FriendInfo.from_pb)

    def invite_list(self, all: bool = False) -> Any:
        """-> list of :class:`InviteInfo`."""
        return self._call(
            "InviteList", pb.InviteListRequest(all=all), lambda r: [InviteInfo.from_pb(i) for i in r.invites]
        )

    def invite_revoke(self, token_id: str) -> Any:
        """-> None."""
        return self._call(
            "InviteRevoke",
            pb.InviteRevokeRequest(token_id=token_id),
            lambda r: None,
            lambda _: {"token_id": token_id, "revoked": True},
        )

    def friends_list(self) -> Any:
        """-> list of :class:`FriendInfo`."""
        return self._call("FriendsList", pb.Empty(), lambda r: [FriendInfo.from_pb(f) for f in r.friends])

    def friends_status(self) -> Any:
        """-> list of :class:`FriendStatus`: each friend's path now, last contact and outbox."""
        return self._call(
            "FriendsStatus",
            pb.Empty(),
            lambda r: [FriendStatus.from_pb(f) for f in r.friends],
            lambda friends: {"friends": as_json(friends)},
        )

    def friend_block(self, ref: str, blocked: bool = True) -> Any:
        """-> :class:`FriendInfo`. ``ref`` is a node id or an alias."""
        return self._call("FriendBlock", pb.FriendBlockRequest(ref=ref, blocked=blocked), FriendInfo.from_pb)

    def friend_remove(self, ref: str) -> Any:
        """-> None."""
        return self._call("FriendRemove", pb.FriendRef(ref=ref), lambda r: None, lambda _: {"removed": ref})

    def msg_send(
        self,
        to: str,
        body: bytes | None = None,
        *,
        text: str | None = None,
        scope: str = "",
        content_type: str = "",
        ttl_ms: int = 0,
        reply_to: str = "",
        wait: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Queue a message to friend ``to`` (node id or alias) -> :class:`MsgState`.

        Give ``body`` (bytes) or ``text`` (str, sent as ``text/plain``). With
        ``wait`` it returns once delivered or failed, or after ``timeout_s``
        (check ``.status``); without, once the node has persisted it."""
        req = _send_request(to, body, text, scope, content_type, ttl_ms, reply_to)
        return self._send_and_wait(req, timeout_s) if wait else self._call("MsgSend", req, MsgState.from_pb)

    def msg_send_many(self, messages: list[dict[str, Any]]) -> Any:
        """Send several messages in one call (one transaction on the node) -> list of :class:`MsgState`.

        Each item has ``to`` and ``body`` and optionally ``scope``,
        ``content_type``, ``ttl_ms`` and ``reply_to``, as for ``msg_send``."""
        req = pb.MsgSendBatchRequest(messages=[pb.MsgSendRequest(**m) for m in messages])
        return self._call("MsgSendBatch", req, lambda r: [MsgState.from_pb(m) for m in r.messages])

    def msg_status(self, message_id: str) -> Any:
        """-> :class:`MsgState`."""
        return self._call("MsgStatus", pb.MsgStatusRequest(message_id=message_id), MsgState.from_pb)

    def msg_wait(self, message_id: str, timeout_s: float) -> Any:
        """-> :class:`MsgState` once delivered or failed, or as it is after ``timeout_s``."""
        return self._call(
            "MsgWait",
            pb.MsgWaitRequest(message_id=message_id, timeout_s=timeout_s),
            MsgState.from_pb,
            timeout=max(timeout_s, 0.0) + 10,  # the node answers a bad timeout itself
        )

    def inbox_list(self, unread: bool = False, limit: int = 0) -> Any:
        """-> list of :class:`InboxItem`, oldest first."""
        return self._call(
            "InboxList",
            pb.InboxListRequest(unread=unread, limit=limit),
            lambda r: [InboxItem.from_pb(m) for m in r.messages],
        )

    def inbox_ack(self, message_ids: Sequence[str] = (), all: bool = False, sender: str = "") -> Any:
        """-> int: how many were marked read."""
        return self._call(
            "InboxAck",
            pb.InboxAckRequest(message_ids=message_ids, all=all, sender=sender),
            lambda r: r.acked,
            lambda n: {"acked": n},
        )

    def inbox_delete(self, message_ids: Sequence[str] = (), acked: bool = False, sender: str = "") -> Any:
        """-> int: how many were deleted."""
        return self._call(
            "InboxDelete",
            pb.InboxDeleteRequest(message_ids=message_ids, acked=acked, sender=sender),
            lambda r: r.deleted,
            lambda n: {"deleted": n},
        )

    def inbox_unread(self) -> Any:
        """-> int: unread messages."""
        return self._call("InboxUnread", pb.Empty(), lambda r: r.unread, lambda n: {"unread": n})


class _Connection:
    """The node's socket and the gRPC channel to it; the clients name the
    channel (blocking or asyncio) in ``_open_channel``."""

    _open_channel: Callable[[str], Any]

    def __init__(
        self,
        socket: Path | str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        state_dir: Path | str | None = None,
    ) -> None:
        self.socket = node_socket(state_dir, socket)
        self.timeout = timeout
        self._channel = self._open_channel(f"unix:{self.socket}")
        self._stub = node_pb2_grpc.NodeApiStub(self._channel)

    def _live_stub(self) -> Any:
        """The stub, once the socket is there: a missing node is named as such,
        not as a gRPC connection error."""
        if not self.socket.exists():
            raise NodeNotRunning(
                f"no tmax-node is running: {self.socket} does not exist; "
                f"start one with `tmax-node --state-dir {self.socket.parent}`"
            )
        return self._stub

    @contextmanager
    def _mesh_errors(self) -> Iterator[None]:
        """gRPC errors raised inside as the :class:`MeshError` they carry."""
        try:
            yield
        except grpc.RpcError as err:
            raise _error(err, self.socket) from None

    def _start(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """Call RPC ``method`` (``timeout`` by default the client's): the reply on
        a blocking channel, the pending call on an asyncio one."""
        stub = self._live_stub()
        with self._mesh_errors():
            return getattr(stub, method)(request, timeout=timeout or self.timeout)

    def _watch(self, include_existing_unread: bool) -> Any:
        """The InboxWatch stream (no deadline: it lasts until the node stops or the caller breaks)."""
        return self._live_stub().InboxWatch(
            pb.InboxWatchRequest(include_existing_unread=include_existing_unread)
        )


class NodeClient(_Connection, _Methods):
    """Blocking SDK client. ``NodeClient()`` finds the node as ``tmax-mesh``
    does; ``NodeClient(state_dir=...)`` or ``NodeClient(socket=...)`` name it.
    Use it as a context manager or call :meth:`close`."""

    @staticmethod
    def _open_channel(target: str) -> Any:
        return grpc.insecure_channel(target)

    def _rpc(
        self, method: str, request: Any, then: Callable[[Any], Any], timeout: float | None = None
    ) -> Any:
        return then(self._start(method, request, timeout))

    def _send_and_wait(self, request: pb.MsgSendRequest, timeout_s: float) -> Any:
        sent = self._rpc("MsgSend", request, MsgState.from_pb)
        return self.msg_wait(sent.message_id, timeout_s)

    def inbox_watch(self, include_existing_unread: bool = False) -> Iterator[Any]:
        """Yield :class:`InboxItem` as messages arrive, until the node stops or the caller breaks."""
        with self._mesh_errors():
            for m in self._watch(include_existing_unread):
                yield self._present(InboxItem.from_pb(m), None)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncNodeClient(_Connection, _Methods):
    """asyncio SDK client; every API method returns an awaitable and
    :meth:`inbox_watch` is an async iterator. Found as :class:`NodeClient` is."""

    @staticmethod
    def _open_channel(target: str) -> Any:
        return grpc.aio.insecure_channel(target)

    async def _rpc(
        self, method: str, request: Any, then: Callable[[Any], Any], timeout: float | None = None
    ) -> Any:
        with self._mesh_errors():
            reply = await self._start(method, request, timeout)
        return then(reply)

    async def _send_and_wait(self, request: pb.MsgSendRequest, timeout_s: float) -> Any:
        sent = await self._rpc("MsgSend", request, MsgState.from_pb)
        return await self.msg_wait(sent.message_id, timeout_s)

    async def inbox_watch(self, include_existing_unread: bool = False) -> AsyncIterator[Any]:
        """Yield :class:`InboxItem` as messages arrive, until the node stops or the caller breaks."""
        call = self._watch(include_existing_unread)
        try:
            with self._mesh_errors():
                async for m in call:
                    yield self._present(InboxItem.from_pb(m), None)
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncNodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
