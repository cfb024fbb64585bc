from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AckStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_STATUS_UNSPECIFIED: _ClassVar[AckStatus]
    ACK_STATUS_ACCEPTED: _ClassVar[AckStatus]
    ACK_STATUS_DUPLICATE: _ClassVar[AckStatus]
    ACK_STATUS_REJECTED: _ClassVar[AckStatus]
ACK_STATUS_UNSPECIFIED: AckStatus
ACK_STATUS_ACCEPTED: AckStatus
ACK_STATUS_DUPLICATE: AckStatus
ACK_STATUS_REJECTED: AckStatus

class RateLimit(_message.Message):
    __slots__ = ("rate_per_s", "burst")
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    rate_per_s: float
    burst: int
    def __init__(self, rate_per_s: _Optional[float] = ..., burst: _Optional[int] = ...) -> None: ...

class InviteBody(_message.Message):
    __slots__ = ("version", "token_id", "inviter_node_id", "inviter_public_key", "relay_hosts", "direct_endpoints", "scopes", "rate_limit", "issued_at_ms", "expires_at_ms", "max_uses", "alias")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    INVITER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INVITER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RELAY_HOSTS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    version: int
    token_id: bytes
    inviter_node_id: bytes
    inviter_public_key: bytes
    relay_hosts: _containers.RepeatedScalarFieldContainer[str]
    direct_endpoints: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    rate_limit: RateLimit
    issued_at_ms: int
    expires_at_ms: int
    max_uses: int
    alias: str
    def __init__(self, version: _Optional[int] = ..., token_id: _Optional[bytes] = ..., inviter_node_id: _Optional[bytes] = ..., inviter_public_key: _Optional[bytes] = ..., relay_hosts: _Optional[_Iterable[str]] = ..., direct_endpoints: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., issued_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., max_uses: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...

class SignedInvite(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ContactCard(_message.Message):
    __slots__ = ("relay_hosts", "endpoints", "alias")
    RELAY_HOSTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    relay_hosts: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    alias: str
    def __init__(self, relay_hosts: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[str]] = ..., alias: _Optional[str] = ...) -> None: ...

class EnvelopeHeader(_message.Message):
    __slots__ = ("version", "message_id", "from_node_id", "to_node_id", "timestamp_ms", "sender_public_key", "ephemeral_public_key", "invite_token_id", "invite_proof")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SENDER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    INVITE_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    INVITE_PROOF_FIELD_NUMBER: _ClassVar[int]
    version: int
    message_id: bytes
    from_node_id: bytes
    to_node_id: bytes
    timestamp_ms: int
    sender_public_key: bytes
    ephemeral_public_key: bytes
    invite_token_id: bytes
    invite_proof: bytes
    def __init__(self, version: _Optional[int] = ..., message_id: _Optional[bytes] = ..., from_node_id: _Optional[bytes] = ..., to_node_id: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., sender_public_key: _Optional[bytes] = ..., ephemeral_public_key: _Optional[bytes] = ..., invite_token_id: _Optional[bytes] = ..., invite_proof: _Optional[bytes] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("header", "ciphertext", "signature")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    ciphertext: bytes
    signature: bytes
    def __init__(self, header: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SealedContent(_message.Message):
    __slots__ = ("scope", "content_type", "body", "reply_to", "contact", "invite")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    INVITE_FIELD_NUMBER: _ClassVar[int]
    scope: str
    content_type: str
    body: bytes
    reply_to: bytes
    contact: ContactCard
    invite: bytes
    def __init__(self, scope: _Optional[str] = ..., content_type: _Optional[str] = ..., body: _Optional[bytes] = ..., reply_to: _Optional[bytes] = ..., contact: _Optional[_Union[ContactCard, _Mapping]] = ..., invite: _Optional[bytes] = ...) -> None: ...

class AckBody(_message.Message):
    __slots__ = ("message_id", "from_node_id", "to_node_id", "status", "reason", "detail", "timestamp_ms", "envelope_hash")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_HASH_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    from_node_id: bytes
    to_node_id: bytes
    status: AckStatus
    reason: str
    detail: str
    timestamp_ms: int
    envelope_hash: bytes
    def __init__(self, message_id: _Optional[bytes] = ..., from_node_id: _Optional[bytes] = ..., to_node_id: _Optional[bytes] = ..., status: _Optional[_Union[AckStatus, str]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., envelope_hash: _Optional[bytes] = ...) -> None: ...

class SignedAck(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EnvelopeBatch(_message.Message):
    __slots__ = ("envelopes", "nonce")
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    nonce: bytes
    def __init__(self, envelopes: _Optional[_Iterable[bytes]] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class AckEntry(_message.Message):
    __slots__ = ("message_id", "status", "reason", "detail", "envelope_hash")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_HASH_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    status: AckStatus
    reason: str
    detail: str
    envelope_hash: bytes
    def __init__(self, message_id: _Optional[bytes] = ..., status: _Optional[_Union[AckStatus, str]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., envelope_hash: _Optional[bytes] = ...) -> None: ...

class AckBatchBody(_message.Message):
    __slots__ = ("from_node_id", "to_node_id", "entries", "timestamp_ms", "nonce")
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    from_node_id: bytes
    to_node_id: bytes
    entries: _containers.RepeatedCompositeFieldContainer[AckEntry]
    timestamp_ms: int
    nonce: bytes
    def __init__(self, from_node_id: _Optional[bytes] = ..., to_node_id: _Optional[bytes] = ..., entries: _Optional[_Iterable[_Union[AckEntry, _Mapping]]] = ..., timestamp_ms: _Optional[int] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class StreamedBatch(_message.Message):
    __slots__ = ("id", "envelopes", "nonce")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    id: int
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    nonce: bytes
    def __init__(self, id: _Optional[int] = ..., envelopes: _Optional[_Iterable[bytes]] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class StreamedAck(_message.Message):
    __slots__ = ("id", "ack")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    id: int
    ack: bytes
    def __init__(self, id: _Optional[int] = ..., ack: _Optional[bytes] = ...) -> None: ...
