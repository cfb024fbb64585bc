from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionMessage(_message.Message):
    __slots__ = ("message_id", "session", "origin", "from_session", "from_node_id", "from_alias", "sent_at_ms", "received_at_ms", "scope", "content_type", "body", "acked", "reply_to")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    FROM_SESSION_FIELD_NUMBER: _ClassVar[int]
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
    session: str
    origin: str
    from_session: str
    from_node_id: str
    from_alias: str
    sent_at_ms: int
    received_at_ms: int
    scope: str
    content_type: str
    body: bytes
    acked: bool
    reply_to: str
    def __init__(self, message_id: _Optional[str] = ..., session: _Optional[str] = ..., origin: _Optional[str] = ..., from_session: _Optional[str] = ..., from_node_id: _Optional[str] = ..., from_alias: _Optional[str] = ..., sent_at_ms: _Optional[int] = ..., received_at_ms: _Optional[int] = ..., scope: _Optional[str] = ..., content_type: _Optional[str] = ..., body: _Optional[bytes] = ..., acked: _Optional[bool] = ..., reply_to: _Optional[str] = ...) -> None: ...

class SendRequest(_message.Message):
    __slots__ = ("from_session", "to_session", "body", "content_type", "reply_to")
    FROM_SESSION_FIELD_NUMBER: _ClassVar[int]
    TO_SESSION_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    from_session: str
    to_session: str
    body: bytes
    content_type: str
    reply_to: str
    def __init__(self, from_session: _Optional[str] = ..., to_session: _Optional[str] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., reply_to: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("session", "unread", "limit")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    session: str
    unread: bool
    limit: int
    def __init__(self, session: _Optional[str] = ..., unread: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SessionMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[SessionMessage, _Mapping]]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("session", "message_ids", "all", "sender")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    session: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    sender: str
    def __init__(self, session: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., sender: _Optional[str] = ...) -> None: ...

class AckReply(_message.Message):
    __slots__ = ("acked",)
    ACKED_FIELD_NUMBER: _ClassVar[int]
    acked: int
    def __init__(self, acked: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("session", "message_ids", "acked", "sender")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    session: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    acked: bool
    sender: str
    def __init__(self, session: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., acked: _Optional[bool] = ..., sender: _Optional[str] = ...) -> None: ...

class DeleteReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class UnreadRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class UnreadReply(_message.Message):
    __slots__ = ("unread",)
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    unread: int
    def __init__(self, unread: _Optional[int] = ...) -> None: ...
