"""The ingress pipeline (DESIGN §8): from inbound envelope bytes to a signed ack.

Order matters: structure and size, then cheap prechecks (no crypto), then the
replay checks, then signature and id/key binding, first-contact invite check,
decryption, policy, and finally durable delivery before the ack. Every
rejection carries a :class:`~tmax_core.errors.Reason` code in the signed ack
the sender sees, and a log line here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tmax_core import envelope as env
from tmax_core.crypto import now_ms, to_checksum
from tmax_core.errors import EnvelopeError, InviteError, MeshError, Reason
from tmax_core.invites import decode_signed_invite
from tmax_core.model import Friend, IngressMeta, IngressSource, ReceivedMessage, Verdict
from tmax_core.proto import mesh_pb2

if TYPE_CHECKING:
    from tmax_core.node import Node

log = logging.getLogger("tmax_mesh.ingress")

ACCEPTED = mesh_pb2.ACK_STATUS_ACCEPTED
DUPLICATE = mesh_pb2.ACK_STATUS_DUPLICATE
REJECTED = mesh_pb2.ACK_STATUS_REJECTED


class Rejected(Exception):
    """Internal control flow: stop the pipeline with a reason for the sender."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Ingress:
    def __init__(self, node: Node) -> None:
        self.node = node
        cfg = node.config
        self.max_bytes: int = cfg.get("messages.max_bytes")
        self.window_ms: int = node.duration_ms("messages.replay_window")

    async def handle(self, data: bytes, source: IngressSource) -> bytes:
        """Run the pipeline on one envelope; always returns serialized SignedAck bytes."""
        node = self.node
        try:
            parsed = env.parse(data, self.max_bytes)
        except EnvelopeError as err:
            log.info("reject from %s: %s (%s)", source.peer, err.code, err)
            return env.make_ack(
                node.identity,
                message_id=b"",
                to_node_id=b"",
                status=REJECTED,
                reason=err.code,
                detail=str(err),
            )
        try:
            status = await self._pipeline(parsed, source)
            return env.make_ack(
                node.identity, message_id=parsed.message_id, to_node_id=parsed.from_node_id, status=status
            )
        except Rejected as rej:
            log.info(
                "reject %s from %s via %s/%s: %s %s",
                parsed.message_id.hex(),
                to_checksum(parsed.from_node_id),
                source.transport,
                source.peer,
                rej.reason,
                rej.detail,
            )
            node.metrics_rejected(rej.reason)
            return env.make_ack(
                node.identity,
                message_id=parsed.message_id,
                to_node_id=parsed.from_node_id,
                status=REJECTED,
                reason=rej.reason,
                detail=rej.detail,
            )

    async def _pipeline(self, parsed: env.ParsedEnvelope, source: IngressSource) -> int:
        node = self.node
        # 1. structure is checked by parse(); the envelope must be for us.
        if parsed.to_node_id != node.identity.node_id:
            raise Rejected(Reason.WRONG_RECIPIENT, "envelope is addressed to another node")
        friend = node.friends.get(parsed.from_node_id)
        # 2. cheap prechecks, no crypto yet.
        meta = IngressMeta(
            message_id=parsed.message_id,
            from_node_id=parsed.from_node_id,
            to_node_id=parsed.to_node_id,
            timestamp_ms=parsed.timestamp_ms,
            size=len(parsed.raw),
            has_invite=bool(parsed.invite),
            friend=friend,
        )
        _raise_first(node.pm.hook.tmax_ingress_precheck(meta=meta, source=source))
        # 3. replay: timestamp window, then seen ids.
        now = now_ms()
        if abs(now - parsed.timestamp_ms) > self.window_ms:
            raise Rejected(Reason.STALE_TIMESTAMP, f"timestamp is outside the {self.window_ms} ms window")
        if await node.db(node.store.seen_check, parsed.message_id) is not None:
            return DUPLICATE
        # 4. signature and id/key binding (+ the stored key of a known friend).
        try:
            env.verify(parsed)
        except EnvelopeError as err:
            raise Rejected(err.code, str(err)) from None
        if friend is not None and friend.public_key != parsed.sender_public_key:
            raise Rejected(Reason.KEY_CHANGED, "sender key differs from the friend's known key")
        # 5. first contact: the token must be one this node issued.
        invite = None
        if friend is None:
            invite = self._check_invite(parsed)
            friend = Friend(
                node_id=parsed.from_node_id,
                public_key=parsed.sender_public_key,
                scopes=list(invite.scopes),
                rate_limit=invite.rate_limit,
                added_at_ms=now,
            )
        # 6. decrypt.
        try:
            content = env.open_content(node.identity, parsed)
        except EnvelopeError as err:
            raise Rejected(err.code, str(err)) from None
        message = ReceivedMessage(
            message_id=parsed.message_id,
            from_node_id=parsed.from_node_id,
            from_alias=friend.alias,
            to_node_id=parsed.to_node_id,
            sent_at_ms=parsed.timestamp_ms,
            received_at_ms=now,
            scope=content.scope,
            content_type=content.content_type,
            body=content.body,
            reply_to=content.reply_to or None,
            via=source.transport,
        )
        # 7. policy: the scope must be registered, granted to the sender and its payload
        #    valid; then plugin checks.
        scope = node.scopes.get(message.scope)
        if scope is None:
            raise Rejected(Reason.UNKNOWN_SCOPE, f"scope {message.scope!r} is not known here")
        if message.scope not in friend.scopes:
            raise Rejected(Reason.SCOPE_NOT_GRANTED, f"scope {message.scope!r} was not granted to the sender")
        if scope.validate is not None:
            try:
                scope.validate(message.content_type, message.body)
            except ValueError as err:
                raise Rejected(Reason.PAYLOAD_INVALID, str(err)) from None
        _raise_first(node.pm.hook.tmax_ingress_check(message=message, friend=friend))
        # 8. (first contact: consume the invite use atomically), deliver durably, record, ack.
        card = content.contact if content.HasField("contact") else None
        if invite is not None:
            if card is not None:
                friend.relay_hosts = list(card.relay_hosts)
                friend.endpoints = list(card.endpoints)
                friend.alias = node.free_alias(card.alias)
            try:
                friend = await node.db(node.store.accept_first_contact, invite.token_id, friend, now)
            except MeshError as err:
                raise Rejected(err.code, str(err)) from None
            node.friend_changed(friend)
            message.from_alias = friend.alias
            log.info(
                "new friend %s (%s) via invite %s",
                to_checksum(friend.node_id),
                friend.alias,
                invite.token_id.hex(),
            )
        elif card is not None:
            await node.update_contact(friend, list(card.relay_hosts), list(card.endpoints))
        try:
            await node.deliver(message)
        except Exception as err:  # a sink failed: the sender retries later
            log.exception("delivery of %s failed", message.message_id.hex())
            raise Rejected(Reason.SINK_FAILED, f"delivery failed: {err}") from None
        return ACCEPTED

    def _check_invite(self, parsed: env.ParsedEnvelope):
        node = self.node
        if not parsed.invite:
            raise Rejected(Reason.UNKNOWN_SENDER, "not a friend and no invite token")
        try:
            invite = decode_signed_invite(parsed.invite)
        except InviteError as err:
            raise Rejected(Reason.INVITE_INVALID, str(err)) from None
        if invite.inviter_node_id != node.identity.node_id:
            raise Rejected(Reason.INVITE_INVALID, "the invite was issued by another node")
        return invite


def _raise_first(verdicts: list[Verdict | None]) -> None:
    for verdict in verdicts:
        if verdict is not None:
            raise Rejected(verdict.reason, verdict.detail)
