"""Errors users see: one clear line each, with a stable machine-readable code.

Every error that crosses a module boundary toward a user (CLI, local API, a
remote sender's ack) is a :class:`MeshError`. ``code`` is part of the contract
(scripts match on it); ``str(err)`` is the human line.
"""

from __future__ import annotations

from typing import Any

ERROR_CODE_KEY = "tmax-error-code"
"""gRPC trailing-metadata key carrying a :class:`MeshError` code across the local API."""

_BY_CODE: dict[str, type[MeshError]] = {}
_BY_PREFIX: dict[str, type[MeshError]] = {}


class MeshError(Exception):
    """Base class: ``code`` is stable, the message is one human-readable line.

    Each subclass that sets its own ``code`` is entered in the table
    :func:`error_for_code` reads, so the table cannot drift from the classes
    (the first class to claim a code keeps it: the core's are defined first).
    Class keywords change that: ``code_prefix="invite_"`` claims every code
    starting with it (its instances carry one of a family of codes), and
    ``named_by_code=False`` claims none (its code also names other errors).
    """

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __init_subclass__(
        cls, *, code_prefix: str | None = None, named_by_code: bool = True, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code_prefix is not None:
            _claim(code_prefix, cls, prefix=True)
        elif named_by_code and "code" in vars(cls):
            _claim(cls.code, cls, prefix=False)


def _owner(code: str) -> type[MeshError] | None:
    """The class that claimed ``code``, by a prefix of it or by the code itself."""
    for prefix, cls in _BY_PREFIX.items():
        if code.startswith(prefix):
            return cls
    return _BY_CODE.get(code)


def _claim(code: str, cls: type[MeshError], *, prefix: bool) -> None:
    """Enter ``cls`` for ``code`` (for every code starting with it if ``prefix``),
    unless a class defined earlier has it: the first claim stays. A subclass that
    restates its parent's code, or takes one of its parent's prefix family, is an
    ordinary refinement (a plugin's ``PeerNotFound(NotFound)``), and a plugin must
    not be refused at import for reusing a core code."""
    taken = _owner(code) is not None or (
        prefix and any(claimed.startswith(code) for claimed in (*_BY_CODE, *_BY_PREFIX))
    )
    if not taken:
        (_BY_PREFIX if prefix else _BY_CODE)[code] = cls


class UsageError(MeshError):
    code = "usage"


class ConfigError(MeshError):
    code = "config"


class StateDirError(MeshError):
    code = "state_dir"


class KeystoreError(MeshError):
    code = "keystore"


class InviteError(MeshError, code_prefix="invite_"):
    """An invite token was rejected; ``code`` says why (see ``InviteReason``)."""

    code = "invite_malformed"


class EnvelopeError(MeshError, named_by_code=False):
    """An envelope failed a check; ``code`` is a :class:`Reason`, a code that a
    plain :class:`MeshError` (an invite's state) or :class:`QuotaExceeded` may carry too."""

    code = "malformed"


class NotFound(MeshError):
    code = "not_found"


class NodeNotRunning(MeshError):
    code = "node_not_running"


class StorageError(MeshError):
    """The node's state database failed (for example, its disk is full)."""

    code = "storage"


class QuotaExceeded(MeshError):
    """A delivery sink has no room for a message within its byte quotas; the
    sender is told ``quota_exceeded`` (see :class:`~tmax_core.model.DeliverySink`)."""

    code = "quota_exceeded"


class UnreadableReply(MeshError):
    """The node's reply cannot be read: whatever answers on the socket (maybe not
    a tmax-node) sent what no tmax-node would."""

    code = "unreadable_reply"


def error_for_code(code: str, message: str) -> MeshError:
    """The :class:`MeshError` subclass for ``code`` (as carried across the local
    API), so callers can catch :class:`NotFound` or :class:`InviteError`
    rather than compare strings; ``code`` is kept as given."""
    cls = _owner(code) or MeshError
    try:
        return cls(message, code=code)
    except TypeError:  # a subclass whose __init__ takes other arguments
        return MeshError(message, code=code)


class InviteReason:
    """Codes carried by :class:`InviteError`."""

    MALFORMED = "invite_malformed"
    BAD_PREFIX = "invite_bad_prefix"
    BAD_BASE64 = "invite_bad_base64"
    TRUNCATED = "invite_truncated"
    VERSION = "invite_unsupported_version"
    BAD_SIGNATURE = "invite_bad_signature"
    ID_MISMATCH = "invite_id_key_mismatch"
    EXPIRED = "invite_expired"
    UNKNOWN_SCOPE = "invite_unknown_scope"
    SELF = "invite_self"


class Reason:
    """Ingress rejection codes a sender sees in a signed ack (and in logs)."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    WRONG_RECIPIENT = "wrong_recipient"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"
    UNKNOWN_SENDER = "unknown_sender"
    STALE_TIMESTAMP = "stale_timestamp"
    BAD_SIGNATURE = "bad_signature"
    ID_KEY_MISMATCH = "id_key_mismatch"
    KEY_CHANGED = "key_changed"
    INVITE_INVALID = "invite_invalid"
    INVITE_USED = "invite_used"
    INVITE_EXPIRED = "invite_expired"
    INVITE_REVOKED = "invite_revoked"
    INVITE_UNKNOWN = "invite_unknown"
    DECRYPT_FAILED = "decrypt_failed"
    SCOPE_NOT_GRANTED = "scope_not_granted"
    UNKNOWN_SCOPE = "unknown_scope"
    PAYLOAD_INVALID = "payload_invalid"
    SINK_FAILED = "sink_failed"
    QUOTA_EXCEEDED = "quota_exceeded"
    INTERNAL = "internal"
