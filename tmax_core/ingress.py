"""The ingress pipeline (DESIGN §8): from inbound envelope bytes to a signed ack.

Order matters: structure and size, then cheap prechecks (no crypto), then the
replay checks, then signature and id/key binding, first-contact invite check,
decryption, policy, and finally durable delivery before the ack. Every
rejection carries a :class:`~tmax_core.errors.Reason` code in the signed ack
the sender sees, and a log line here.

Envelopes are processed in batches (one for ``Deliver``, many for
``DeliverBatch``): the checks run per envelope, but the database work is one
seen-id lookup before the crypto and one delivery + record after it, for the
whole batch. Answers are one signed ack per envelope, or one signed batch ack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tmax_core import envelope as env
from tmax_core.crypto import now_ms, to_checksum
from tmax_core.errors import EnvelopeError, InviteError, MeshError, Reason
from tmax_core.invites import Invite, decode_signed_invite
from tmax_core.model import Friend, IngressMeta, IngressSource, ReceivedMessage, Verdict
from tmax_core.proto import mesh_pb2

if TYPE_CHECKING:
    from tmax_core.node import Node

log = logging.getLogger("tmax_mesh.ingress")

ACCEPTED = mesh_pb2.ACK_STATUS_ACCEPTED
DUPLICATE = mesh_pb2.ACK_STATUS_DUPLICATE
REJECTED = mesh_pb2.ACK_STATUS_REJECTED
MAX_BATCH = 1024


class Rejected(Exception):
    """Internal control flow: stop the pipeline with a reason for the sender."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Outcome:
    """What the sender is told about one envelope."""

    message_id: bytes
    sender: bytes
    status: int
    reason: str = ""
    detail: str = ""


class Ingress:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.max_bytes: int = node.config.get("messages.max_bytes")
        self.window_ms: int = node.duration_ms("messages.replay_window")

    async def handle(self, data: bytes, source: IngressSource) -> bytes:
        """One envelope in, one serialized SignedAck out."""
        (o,) = await self.process([data], source)
        return env.make_ack(
            self.node.identity,
            message_id=o.message_id,
            to_node_id=o.sender,
            status=o.status,
            reason=o.reason,
            detail=o.detail,
        )

    async def handle_batch(self, envelopes: list[bytes], source: IngressSource) -> bytes:
        """Envelopes from one sender in, one serialized batch SignedAck out."""
        if len(envelopes) > MAX_BATCH:
            envelopes = envelopes[:MAX_BATCH]  # the rest get no entry: the sender retries them
        outcomes = await self.process(envelopes, source)
        sender = next((o.sender for o in outcomes if o.sender), b"")
        entries = [
            mesh_pb2.AckEntry(message_id=o.message_id, status=o.status, reason=o.reason, detail=o.detail)
            for o in outcomes
        ]
        return env.make_ack_batch(self.node.identity, to_node_id=sender, entries=entries)

    async def process(self, envelopes: list[bytes], source: IngressSource) -> list[Outcome]:
        """Run the pipeline over envelopes; one :class:`Outcome` each, in order."""
        node = self.node
        now = now_ms()
        outcomes: list[Outcome | None] = [None] * len(envelopes)
        candidates: list[tuple[int, env.ParsedEnvelope]] = []
        batch_sender: bytes | None = None
        for i, data in enumerate(envelopes):
            try:
                parsed = env.parse(data, self.max_bytes)
            except EnvelopeError as err:
                outcomes[i] = self._reject(b"", b"", source, err.code, str(err))
                continue
            if batch_sender is None:
                batch_sender = parsed.from_node_id
            try:
                if parsed.from_node_id != batch_sender:
                    raise Rejected(Reason.MALFORMED, "a batch must carry one sender's envelopes")
                self._precheck(parsed, source, now)
            except Rejected as rej:
                outcomes[i] = self._reject(
                    parsed.message_id, parsed.from_node_id, source, rej.reason, rej.detail
                )
                continue
            candidates.append((i, parsed))
        # 3b. duplicates: one lookup for the whole batch (and repeats inside it).
        seen = await node.db_batch(node.store.seen_check_many, [p.message_id for _, p in candidates])
        accepted: list[tuple[int, ReceivedMessage]] = []
        in_batch: set[bytes] = set()
        for i, parsed in candidates:
            if parsed.message_id in seen or parsed.message_id in in_batch:
                outcomes[i] = Outcome(parsed.message_id, parsed.from_node_id, DUPLICATE)
                continue
            try:
                message = await self._admit(parsed, source, now)
            except Rejected as rej:
                outcomes[i] = self._reject(
                    parsed.message_id, parsed.from_node_id, source, rej.reason, rej.detail
                )
                continue
            in_batch.add(parsed.message_id)
            accepted.append((i, message))
        # 8. deliver durably to the sinks, record the ids, then answer.
        if accepted:
            try:
                await node.deliver_many([m for _, m in accepted])
                status, reason, detail = ACCEPTED, "", ""
            except Exception as err:  # a sink failed: the sender retries later
                log.exception("delivery of %d message(s) failed", len(accepted))
                status, reason, detail = REJECTED, Reason.SINK_FAILED, f"delivery failed: {err}"
                node.metrics_rejected(reason)
            for i, m in accepted:
                outcomes[i] = Outcome(m.message_id, m.from_node_id, status, reason, detail)
        return [o for o in outcomes if o is not None]

    def _reject(
        self, message_id: bytes, sender: bytes, source: IngressSource, reason: str, detail: str
    ) -> Outcome:
        log.info(
            "reject %s from %s via %s/%s: %s %s",
            message_id.hex() or "-",
            to_checksum(sender) if sender else "?",
            source.transport,
            source.peer,
            reason,
            detail,
        )
        self.node.metrics_rejected(reason)
        return Outcome(message_id, sender, REJECTED, reason, detail)

    def _precheck(self, parsed: env.ParsedEnvelope, source: IngressSource, now: int) -> None:
        """Steps 1-3a: recipient, plugin prechecks (no crypto yet), timestamp window."""
        node = self.node
        if parsed.to_node_id != node.identity.node_id:
            raise Rejected(Reason.WRONG_RECIPIENT, "envelope is addressed to another node")
        meta = IngressMeta(
            message_id=parsed.message_id,
            from_node_id=parsed.from_node_id,
            to_node_id=parsed.to_node_id,
            timestamp_ms=parsed.timestamp_ms,
            size=len(parsed.raw),
            has_invite=bool(parsed.invite),
            friend=node.friends.get(parsed.from_node_id),
        )
        _raise_first(node.pm.hook.tmax_ingress_precheck(meta=meta, source=source))
        if abs(now - parsed.timestamp_ms) > self.window_ms:
            raise Rejected(Reason.STALE_TIMESTAMP, f"timestamp is outside the {self.window_ms} ms window")

    async def _admit(self, parsed: env.ParsedEnvelope, source: IngressSource, now: int) -> ReceivedMessage:
        """Steps 4-7 (and the first-contact commit): a message ready for the sinks."""
        node = self.node
        friend = node.friends.get(parsed.from_node_id)
        # 4. signature and id/key binding. A known friend's stored key was bound
        #    to its id when the friend was added, so the same key needs no re-check.
        known_key = friend is not None and friend.public_key == parsed.sender_public_key
        try:
            env.verify(parsed, key_is_bound=known_key)
        except EnvelopeError as err:
            raise Rejected(err.code, str(err)) from None
        if friend is not None and not known_key:
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
        # 7. policy: the scope must be registered, granted to the sender and its
        #    payload valid; then plugin checks.
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
        card = content.contact if content.HasField("contact") else None
        if invite is not None:
            message.from_alias = await self._befriend(invite, friend, card, now)
        elif card is not None:
            await node.update_contact(friend, list(card.relay_hosts), list(card.endpoints))
        return message

    async def _befriend(
        self, invite: Invite, friend: Friend, card: mesh_pb2.ContactCard | None, now: int
    ) -> str | None:
        """First contact: consume the invite use and add the friend, atomically."""
        node = self.node
        if card is not None:
            friend.relay_hosts, friend.endpoints = node.checked_contact(
                friend.node_id, card.relay_hosts, card.endpoints
            )
            friend.alias = node.remote_alias(card.alias, friend.node_id)
        try:
            friend = await node.db(node.store.accept_first_contact, invite.token_id, friend, now)
        except MeshError as err:
            raise Rejected(err.code, str(err)) from None
        node.friend_changed(friend)
        log.info(
            "new friend %s (%s) via invite %s",
            to_checksum(friend.node_id),
            friend.alias,
            invite.token_id.hex(),
        )
        return friend.alias

    def _check_invite(self, parsed: env.ParsedEnvelope) -> Invite:
        if not parsed.invite:
            raise Rejected(Reason.UNKNOWN_SENDER, "not a friend and no invite token")
        try:
            invite = decode_signed_invite(parsed.invite)
        except InviteError as err:
            raise Rejected(Reason.INVITE_INVALID, str(err)) from None
        if invite.inviter_node_id != self.node.identity.node_id:
            raise Rejected(Reason.INVITE_INVALID, "the invite was issued by another node")
        return invite


def _raise_first(verdicts: list[Verdict | None]) -> None:
    for verdict in verdicts:
        if verdict is not None:
            raise Rejected(verdict.reason, verdict.detail)
