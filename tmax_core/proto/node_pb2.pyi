from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("rate_per_s", "burst")
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    rate_per_s: float
    burst: int
    def __init__(self, rate_per_s: _Optional[float] = ..., burst: _Optional[int] = ...) -> None: ...

class NodeInfoReply(_message.Message):
    __slots__ = ("node_id", "public_key", "state_dir", "socket", "version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    public_key: str
    state_dir: str
    socket: str
    version: str
    def __init__(self, node_id: _Optional[str] = ..., public_key: _Optional[str] = ..., state_dir: _Optional[str] = ..., socket: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class TransportStatus(_message.Message):
    __slots__ = ("name", "state", "details_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    details_json: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...

class FriendStatus(_message.Message):
    __slots__ = ("node_id", "alias", "path", "last_seen_ms", "blocked", "outbox")
    class OutboxEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    alias: str
    path: str
    last_seen_ms: int
    blocked: bool
    outbox: _containers.ScalarMap[str, int]
    def __init__(self, node_id: _Optional[str] = ..., alias: _Optional[str] = ..., path: _Optional[str] = ..., last_seen_ms: _Optional[int] = ..., blocked: _Optional[bool] = ..., outbox: _Optional[_Mapping[str, int]] = ...) -> None: ...

class FriendsStatusReply(_message.Message):
    __slots__ = ("friends",)
    FRIENDS_FIELD_NUMBER: _ClassVar[int]
    friends: _containers.RepeatedCompositeFieldContainer[FriendStatus]
    def __init__(self, friends: _Optional[_Iterable[_Union[FriendStatus, _Mapping]]] = ...) -> None: ...

class NodeStatusReply(_message.Message):
    __slots__ = ("node_id", "friends", "transports", "peer_listen", "uptime_ms", "inbox_unread", "outbox", "sinks", "counters")
    class OutboxEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FRIENDS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    PEER_LISTEN_FIELD_NUMBER: _ClassVar[int]
    UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    INBOX_UNREAD_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_FIELD_NUMBER: _ClassVar[int]
    SINKS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    friends: int
    transports: _containers.RepeatedCompositeFieldContainer[TransportStatus]
    peer_listen: str
    uptime_ms: int
    inbox_unread: int
    outbox: _containers.ScalarMap[str, int]
    sinks: _containers.RepeatedScalarFieldContainer[str]
    counters: _containers.ScalarMap[str, int]
    def __init__(self, node_id: _Optional[str] = ..., friends: _Optional[int] = ..., transports: _Optional[_Iterable[_Union[TransportStatus, _Mapping]]] = ..., peer_listen: _Optional[str] = ..., uptime_ms: _Optional[int] = ..., inbox_unread: _Optional[int] = ..., outbox: _Optional[_Mapping[str, int]] = ..., sinks: _Optional[_Iterable[str]] = ..., counters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Friend(_message.Message):
    __slots__ = ("node_id", "alias", "blocked", "scopes", "relay_hosts", "endpoints", "added_at_ms", "last_seen_ms", "rate_limit")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RELAY_HOSTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    alias: str
    blocked: bool
    scopes: _containers.RepeatedScalarFieldContainer[str]
    relay_hosts: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    added_at_ms: int
    last_seen_ms: int
    rate_limit: RateLimit
    def __init__(self, node_id: _Optional[str] = ..., alias: _Optional[str] = ..., blocked: _Optional[bool] = ..., scopes: _Optional[_Iterable[str]] = ..., relay_hosts: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[str]] = ..., added_at_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class InviteCreateRequest(_message.Message):
    __slots__ = ("ttl_ms", "uses", "uses_set", "scopes", "relay_hosts", "endpoints", "alias", "rate_limit")
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    USES_SET_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RELAY_HOSTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    uses: int
    uses_set: bool
    scopes: _containers.RepeatedScalarFieldContainer[str]
    relay_hosts: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    alias: str
    rate_limit: RateLimit
    def __init__(self, ttl_ms: _Optional[int] = ..., uses: _Optional[int] = ..., uses_set: _Optional[bool] = ..., scopes: _Optional[_Iterable[str]] = ..., relay_hosts: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[str]] = ..., alias: _Optional[str] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class InviteCreateReply(_message.Message):
    __slots__ = ("token", "token_id", "expires_at_ms", "uses", "scopes", "relay_hosts", "endpoints")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RELAY_HOSTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    expires_at_ms: int
    uses: int
    scopes: _containers.RepeatedScalarFieldContainer[str]
    relay_hosts: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., uses: _Optional[int] = ..., scopes: _Optional[_Iterable[str]] = ..., relay_hosts: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class InviteAcceptRequest(_message.Message):
    __slots__ = ("token", "alias")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    token: str
    alias: str
    def __init__(self, token: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class IssuedInvite(_message.Message):
    __slots__ = ("token_id", "expires_at_ms", "uses_left", "scopes", "created_at_ms", "revoked", "max_uses")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    USES_LEFT_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    expires_at_ms: int
    uses_left: int
    scopes: _containers.RepeatedScalarFieldContainer[str]
    created_at_ms: int
    revoked: bool
    max_uses: int
    def __init__(self, token_id: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., uses_left: _Optional[int] = ..., scopes: _Optional[_Iterable[str]] = ..., created_at_ms: _Optional[int] = ..., revoked: _Optional[bool] = ..., max_uses: _Optional[int] = ...) -> None: ...

class InviteListRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class InviteListReply(_message.Message):
    __slots__ = ("invites",)
    INVITES_FIELD_NUMBER: _ClassVar[int]
    invites: _containers.RepeatedCompositeFieldContainer[IssuedInvite]
    def __init__(self, invites: _Optional[_Iterable[_Union[IssuedInvite, _Mapping]]] = ...) -> None: ...

class InviteRevokeRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class FriendsListReply(_message.Message):
    __slots__ = ("friends",)
    FRIENDS_FIELD_NUMBER: _ClassVar[int]
    friends: _containers.RepeatedCompositeFieldContainer[Friend]
    def __init__(self, friends: _Optional[_Iterable[_Union[Friend, _Mapping]]] = ...) -> None: ...

class FriendRef(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class FriendBlockRequest(_message.Message):
    __slots__ = ("ref", "blocked")
    REF_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    ref: str
    blocked: bool
    def __init__(self, ref: _Optional[str] = ..., blocked: _Optional[bool] = ...) -> None: ...

class MsgSendRequest(_message.Message):
    __slots__ = ("to", "body", "scope", "content_type", "ttl_ms", "reply_to")
    TO_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    to: str
    body: bytes
    scope: str
    content_type: str
    ttl_ms: int
    reply_to: str
    def __init__(self, to: _Optional[str] = ..., body: _Optional[bytes] = ..., scope: _Optional[str] = ..., content_type: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., reply_to: _Optional[str] = ...) -> None: ...

class MsgSendBatchRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[MsgSendRequest]
    def __init__(self, messages: _Optional[_Iterable[_Union[MsgSendRequest, _Mapping]]] = ...) -> None: ...

class MsgSendBatchReply(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[MsgState]
    def __init__(self, messages: _Optional[_Iterable[_Union[MsgState, _Mapping]]] = ...) -> None: ...

class MsgStatusRequest(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...

class MsgWaitRequest(_message.Message):
    __slots__ = ("message_id", "timeout_s")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    timeout_s: float
    def __init__(self, message_id: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class MsgState(_message.Message):
    __slots__ = ("message_id", "status", "path", "attempts", "error", "to", "created_at_ms", "delivered_at_ms")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    status: str
    path: str
    attempts: int
    error: str
    to: str
    created_at_ms: int
    delivered_at_ms: int
    def __init__(self, message_id: _Optional[str] = ..., status: _Optional[str] = ..., path: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., to: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., delivered_at_ms: _Optional[int] = ...) -> None: ...

class InboxMessage(_message.Message):
    __slots__ = ("message_id", "from_node_id", "from_alias", "sent_at_ms", "received_at_ms", "scope", "content_type", "body", "acked", "reply_to")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ALIAS_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    from_node_id: str
    from_alias: str
    sent_at_ms: int
    received_at_ms: int
    scope: str
    content_type: str
    body: bytes
    acked: bool
    reply_to: str
    def __init__(self, message_id: _Optional[str] = ..., from_node_id: _Optional[str] = ..., from_alias: _Optional[str] = ..., sent_at_ms: _Optional[int] = ..., received_at_ms: _Optional[int] = ..., scope: _Optional[str] = ..., content_type: _Optional[str] = ..., body: _Optional[bytes] = ..., acked: _Optional[bool] = ..., reply_to: _Optional[str] = ...) -> None: ...

class InboxListRequest(_message.Message):
    __slots__ = ("unread", "limit")
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    unread: bool
    limit: int
    def __init__(self, unread: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class InboxListReply(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[InboxMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[InboxMessage, _Mapping]]] = ...) -> None: ...

class InboxAckRequest(_message.Message):
    __slots__ = ("message_ids", "all", "sender")
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    sender: str
    def __init__(self, message_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., sender: _Optional[str] = ...) -> None: ...

class InboxAckReply(_message.Message):
    __slots__ = ("acked",)
    ACKED_FIELD_NUMBER: _ClassVar[int]
    acked: int
    def __init__(self, acked: _Optional[int] = ...) -> None: ...

class InboxDeleteRequest(_message.Message):
    __slots__ = ("message_ids", "acked", "sender")
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    acked: bool
    sender: str
    def __init__(self, message_ids: _Optional[_Iterable[str]] = ..., acked: _Optional[bool] = ..., sender: _Optional[str] = ...) -> None: ...

class InboxDeleteReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class InboxUnreadReply(_message.Message):
    __slots__ = ("unread",)
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    unread: int
    def __init__(self, unread: _Optional[int] = ...) -> None: ...

class InboxWatchRequest(_message.Message):
    __slots__ = ("include_existing_unread",)
    INCLUDE_EXISTING_UNREAD_FIELD_NUMBER: _ClassVar[int]
    include_existing_unread: bool
    def __init__(self, include_existing_unread: _Optional[bool] = ...) -> None: ...
