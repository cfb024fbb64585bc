from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Challenge(_message.Message):
    __slots__ = ("nonce", "host_id", "time_ms")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    host_id: bytes
    time_ms: int
    def __init__(self, nonce: _Optional[bytes] = ..., host_id: _Optional[bytes] = ..., time_ms: _Optional[int] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("node_id", "public_key", "endpoints", "lookup_allow", "signature", "relay_url", "tls_cert_sha256", "takes_frames")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_ALLOW_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    RELAY_URL_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_SHA256_FIELD_NUMBER: _ClassVar[int]
    TAKES_FRAMES_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    public_key: bytes
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    lookup_allow: _containers.RepeatedScalarFieldContainer[bytes]
    signature: bytes
    relay_url: str
    tls_cert_sha256: bytes
    takes_frames: bool
    def __init__(self, node_id: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., endpoints: _Optional[_Iterable[str]] = ..., lookup_allow: _Optional[_Iterable[bytes]] = ..., signature: _Optional[bytes] = ..., relay_url: _Optional[str] = ..., tls_cert_sha256: _Optional[bytes] = ..., takes_frames: _Optional[bool] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_frame_bytes", "rate_per_s", "burst", "queue_max_messages", "queue_max_bytes", "queue_ttl_ms", "idle_timeout_ms", "max_lookup_allow")
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_LOOKUP_ALLOW_FIELD_NUMBER: _ClassVar[int]
    max_frame_bytes: int
    rate_per_s: float
    burst: int
    queue_max_messages: int
    queue_max_bytes: int
    queue_ttl_ms: int
    idle_timeout_ms: int
    max_lookup_allow: int
    def __init__(self, max_frame_bytes: _Optional[int] = ..., rate_per_s: _Optional[float] = ..., burst: _Optional[int] = ..., queue_max_messages: _Optional[int] = ..., queue_max_bytes: _Optional[int] = ..., queue_ttl_ms: _Optional[int] = ..., idle_timeout_ms: _Optional[int] = ..., max_lookup_allow: _Optional[int] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("observed_addr", "limits", "connection_id", "queued", "member_urls", "max_batch")
    OBSERVED_ADDR_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    MEMBER_URLS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    observed_addr: str
    limits: Limits
    connection_id: str
    queued: int
    member_urls: _containers.RepeatedScalarFieldContainer[str]
    max_batch: int
    def __init__(self, observed_addr: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., connection_id: _Optional[str] = ..., queued: _Optional[int] = ..., member_urls: _Optional[_Iterable[str]] = ..., max_batch: _Optional[int] = ...) -> None: ...

class RelaySend(_message.Message):
    __slots__ = ("to", "envelope")
    TO_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    to: bytes
    envelope: bytes
    def __init__(self, to: _Optional[bytes] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class RelaySendBatch(_message.Message):
    __slots__ = ("to", "batch_id", "envelopes")
    TO_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    to: bytes
    batch_id: bytes
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, to: _Optional[bytes] = ..., batch_id: _Optional[bytes] = ..., envelopes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DeliverBatch(_message.Message):
    __slots__ = ("batch_id", "envelopes")
    FROM_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    batch_id: bytes
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, batch_id: _Optional[bytes] = ..., envelopes: _Optional[_Iterable[bytes]] = ..., **kwargs) -> None: ...

class AckBatchSend(_message.Message):
    __slots__ = ("to", "batch_id", "ack")
    TO_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    to: bytes
    batch_id: bytes
    ack: bytes
    def __init__(self, to: _Optional[bytes] = ..., batch_id: _Optional[bytes] = ..., ack: _Optional[bytes] = ...) -> None: ...

class AckBatch(_message.Message):
    __slots__ = ("batch_id", "ack")
    FROM_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    batch_id: bytes
    ack: bytes
    def __init__(self, batch_id: _Optional[bytes] = ..., ack: _Optional[bytes] = ..., **kwargs) -> None: ...

class Deliver(_message.Message):
    __slots__ = ("message_id", "envelope")
    FROM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    envelope: bytes
    def __init__(self, message_id: _Optional[bytes] = ..., envelope: _Optional[bytes] = ..., **kwargs) -> None: ...

class Queued(_message.Message):
    __slots__ = ("message_id", "to")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    to: bytes
    def __init__(self, message_id: _Optional[bytes] = ..., to: _Optional[bytes] = ...) -> None: ...

class AckSend(_message.Message):
    __slots__ = ("to", "message_id", "ack")
    TO_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    to: bytes
    message_id: bytes
    ack: bytes
    def __init__(self, to: _Optional[bytes] = ..., message_id: _Optional[bytes] = ..., ack: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("message_id", "ack")
    FROM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    message_id: bytes
    ack: bytes
    def __init__(self, message_id: _Optional[bytes] = ..., ack: _Optional[bytes] = ..., **kwargs) -> None: ...

class Ping(_message.Message):
    __slots__ = ("time_ms",)
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    def __init__(self, time_ms: _Optional[int] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("time_ms",)
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    def __init__(self, time_ms: _Optional[int] = ...) -> None: ...

class Lookup(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    def __init__(self, target: _Optional[bytes] = ...) -> None: ...

class LookupResult(_message.Message):
    __slots__ = ("target", "found", "endpoints", "observed_ip")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_IP_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    found: bool
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    observed_ip: str
    def __init__(self, target: _Optional[bytes] = ..., found: _Optional[bool] = ..., endpoints: _Optional[_Iterable[str]] = ..., observed_ip: _Optional[str] = ...) -> None: ...

class SetLookupAllow(_message.Message):
    __slots__ = ("node_ids",)
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, node_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PunchListen(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PunchToken(_message.Message):
    __slots__ = ("token", "port")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    token: bytes
    port: int
    def __init__(self, token: _Optional[bytes] = ..., port: _Optional[int] = ...) -> None: ...

class PunchMapped(_message.Message):
    __slots__ = ("addr",)
    ADDR_FIELD_NUMBER: _ClassVar[int]
    addr: str
    def __init__(self, addr: _Optional[str] = ...) -> None: ...

class PunchRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    def __init__(self, target: _Optional[bytes] = ...) -> None: ...

class PunchGo(_message.Message):
    __slots__ = ("peer", "peer_addr", "dial_in_ms", "attempt")
    PEER_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    DIAL_IN_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    peer: bytes
    peer_addr: str
    dial_in_ms: int
    attempt: bytes
    def __init__(self, peer: _Optional[bytes] = ..., peer_addr: _Optional[str] = ..., dial_in_ms: _Optional[int] = ..., attempt: _Optional[bytes] = ...) -> None: ...

class PunchRefused(_message.Message):
    __slots__ = ("target", "reason")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    reason: str
    def __init__(self, target: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "detail", "message_id", "node_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    detail: str
    message_id: bytes
    node_id: bytes
    def __init__(self, code: _Optional[str] = ..., detail: _Optional[str] = ..., message_id: _Optional[bytes] = ..., node_id: _Optional[bytes] = ...) -> None: ...

class Members(_message.Message):
    __slots__ = ("member_urls",)
    MEMBER_URLS_FIELD_NUMBER: _ClassVar[int]
    member_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, member_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class Frames(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[HostFrame]
    def __init__(self, frames: _Optional[_Iterable[_Union[HostFrame, _Mapping]]] = ...) -> None: ...

class NodeFrame(_message.Message):
    __slots__ = ("register", "relay_send", "ack_send", "ping", "pong", "lookup", "set_lookup_allow", "punch_listen", "punch_request", "relay_send_batch", "ack_batch_send")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    RELAY_SEND_FIELD_NUMBER: _ClassVar[int]
    ACK_SEND_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    SET_LOOKUP_ALLOW_FIELD_NUMBER: _ClassVar[int]
    PUNCH_LISTEN_FIELD_NUMBER: _ClassVar[int]
    PUNCH_REQUEST_FIELD_NUMBER: _ClassVar[int]
    RELAY_SEND_BATCH_FIELD_NUMBER: _ClassVar[int]
    ACK_BATCH_SEND_FIELD_NUMBER: _ClassVar[int]
    register: Register
    relay_send: RelaySend
    ack_send: AckSend
    ping: Ping
    pong: Pong
    lookup: Lookup
    set_lookup_allow: SetLookupAllow
    punch_listen: PunchListen
    punch_request: PunchRequest
    relay_send_batch: RelaySendBatch
    ack_batch_send: AckBatchSend
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., relay_send: _Optional[_Union[RelaySend, _Mapping]] = ..., ack_send: _Optional[_Union[AckSend, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., lookup: _Optional[_Union[Lookup, _Mapping]] = ..., set_lookup_allow: _Optional[_Union[SetLookupAllow, _Mapping]] = ..., punch_listen: _Optional[_Union[PunchListen, _Mapping]] = ..., punch_request: _Optional[_Union[PunchRequest, _Mapping]] = ..., relay_send_batch: _Optional[_Union[RelaySendBatch, _Mapping]] = ..., ack_batch_send: _Optional[_Union[AckBatchSend, _Mapping]] = ...) -> None: ...

class HostFrame(_message.Message):
    __slots__ = ("challenge", "registered", "deliver", "queued", "ack", "ping", "pong", "lookup_result", "error", "punch_token", "punch_mapped", "punch_go", "punch_refused", "members", "deliver_batch", "ack_batch", "frames")
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    DELIVER_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PUNCH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUNCH_MAPPED_FIELD_NUMBER: _ClassVar[int]
    PUNCH_GO_FIELD_NUMBER: _ClassVar[int]
    PUNCH_REFUSED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DELIVER_BATCH_FIELD_NUMBER: _ClassVar[int]
    ACK_BATCH_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    challenge: Challenge
    registered: Registered
    deliver: Deliver
    queued: Queued
    ack: Ack
    ping: Ping
    pong: Pong
    lookup_result: LookupResult
    error: Error
    punch_token: PunchToken
    punch_mapped: PunchMapped
    punch_go: PunchGo
    punch_refused: PunchRefused
    members: Members
    deliver_batch: DeliverBatch
    ack_batch: AckBatch
    frames: Frames
    def __init__(self, challenge: _Optional[_Union[Challenge, _Mapping]] = ..., registered: _Optional[_Union[Registered, _Mapping]] = ..., deliver: _Optional[_Union[Deliver, _Mapping]] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., lookup_result: _Optional[_Union[LookupResult, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., punch_token: _Optional[_Union[PunchToken, _Mapping]] = ..., punch_mapped: _Optional[_Union[PunchMapped, _Mapping]] = ..., punch_go: _Optional[_Union[PunchGo, _Mapping]] = ..., punch_refused: _Optional[_Union[PunchRefused, _Mapping]] = ..., members: _Optional[_Union[Members, _Mapping]] = ..., deliver_batch: _Optional[_Union[DeliverBatch, _Mapping]] = ..., ack_batch: _Optional[_Union[AckBatch, _Mapping]] = ..., frames: _Optional[_Union[Frames, _Mapping]] = ...) -> None: ...
