"""The ingress pipeline (DESIGN §8): from inbound envelope bytes to a signed ack.

Order matters: structure and size, then cheap prechecks (no crypto: a
stranger that names no invite this node issued is turned away on a dict
lookup), then the replay checks, then signature and id/key binding,
first-contact invite check, decryption, policy, and finally durable delivery
before the ack. Every rejection carries a :class:`~tmax_core.errors.Reason`
code in the signed ack the sender sees, and a log line here.

A message is (sender, message_id): the seen table and the inbox are keyed by
both, and "duplicate" answers only an envelope authenticated as that sender's
(the exact bytes accepted before, or a valid signature); a repeat inside one
batch gets the outcome of its first copy. Every ack names the SHA-256 of the
envelope it answers, and the sender takes it as the outcome only for an
envelope it sent, so an ack for anything a relay made up decides nothing.

Envelopes are processed in batches (one for ``Deliver``, many for
``DeliverBatch``): the checks run per envelope, but the database work is one
seen-id lookup before the crypto and one delivery + record after it, for the
whole batch. Answers are one signed ack per envelope, or one signed batch ack.
Answers where nothing authenticated are signed only within a small budget
(:data:`UNAUTHENTICATED_ANSWER_RATE`), whoever the envelope claims to be from:
signing is a public-key operation, and forged traffic must not be able to make
the node do one per envelope. Beyond the budget the answer is empty (the relay
sends none back); their log lines have a budget too. Empty batches (the direct
plugin's probes) are answered within a budget per source address.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tmax_core import envelope as env
from tmax_core.clock import now_ms
from tmax_core.crypto import to_checksum
from tmax_core.errors import EnvelopeError, MeshError, Reason
from tmax_core.model import (
    Friend,
    IngressMeta,
    IngressSource,
    IssuedInvite,
    IssuedToken,
    ReceivedMessage,
    Verdict,
)
from tmax_core.proto import mesh_pb2
from tmax_core.tokenbucket import TokenBucket

if TYPE_CHECKING:
    from tmax_core.nodeports import IngressHost

log = logging.getLogger("tmax_mesh.ingress")

ACCEPTED = mesh_pb2.ACK_STATUS_ACCEPTED
DUPLICATE = mesh_pb2.ACK_STATUS_DUPLICATE
REJECTED = mesh_pb2.ACK_STATUS_REJECTED
MAX_BATCH = 1024
# Signed answers per second (and burst) where nothing authenticated, per
# claimed friend and over all strangers: enough for a friend over its rate
# limit, or an honest node whose invite was used, to learn why; far too few to
# make signing a lever for a flood. A forger claiming friend X (its id is in
# every header X sends) can use up X's allowance, and X's answers then come
# later, not wrongly; no other friend's.
UNAUTHENTICATED_ANSWER_RATE = 10.0
UNAUTHENTICATED_ANSWER_BURST = 50
# Signed answers to empty batches (the direct plugin's probes, which name no
# sender), per source address and over all: a flood from one address cannot
# starve the probes of friends elsewhere. A refused probe leaves that friend
# on the relay until its next probe.
PROBE_ANSWER_RATE = 2.0
PROBE_ANSWER_BURST = 10
PROBE_ANSWER_TOTAL_RATE = 200.0
PROBE_SOURCES = 4096  # most per-source probe buckets kept (the least recently used go)
MAX_NONCE_LEN = 32
# Unauthenticated rejections logged per second (and burst): the rest are counted only.
REJECT_LOG_RATE = 1.0
REJECT_LOG_BURST = 10
QUOTA_DETAIL = "no room in the recipient's quota for unread messages until it reads or deletes some"


class Rejected(Exception):
    """Internal control flow: stop the pipeline with a reason for the sender.
    ``authenticated``: raised after the envelope verified as the sender's."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.authenticated = False


@dataclass
class Outcome:
    """What the sender is told about one envelope."""

    message_id: bytes
    sender: bytes
    status: mesh_pb2.AckStatus
    reason: str = ""
    detail: str = ""
    raw: bytes = b""  # the envelope answered
    authenticated: bool = False  # the envelope verified as the sender's
    digest: bytes | None = None  # envelope_hash(raw), when already known

    @property
    def envelope_hash(self) -> bytes:
        """What the ack names: the hash of the exact envelope answered."""
        if self.digest is None:
            self.digest = env.envelope_hash(self.raw)
        return self.digest

    def ack_entry(self) -> mesh_pb2.AckEntry:
        return mesh_pb2.AckEntry(
            message_id=self.message_id,
            status=self.status,
            reason=self.reason,
            detail=self.detail,
            envelope_hash=self.envelope_hash,
        )

    def repeated_by(self, parsed: env.ParsedEnvelope) -> Outcome:
        """This outcome for a repeat of the message later in the same batch."""
        status = DUPLICATE if self.status == ACCEPTED else self.status
        return _authentic(
            self.message_id, self.sender, parsed.raw, parsed.digest, status, self.reason, self.detail
        )


def _authentic(
    message_id: bytes,
    sender: bytes,
    raw: bytes,
    digest: bytes,
    status: mesh_pb2.AckStatus,
    reason: str = "",
    detail: str = "",
) -> Outcome:
    """The outcome for an envelope that verified as the sender's."""
    return Outcome(message_id, sender, status, reason, detail, raw=raw, authenticated=True, digest=digest)


class Ingress:
    def __init__(self, node: IngressHost) -> None:
        self.node = node
        self.max_bytes: int = node.config.get("messages.max_bytes")
        self.window_ms: int = node.duration_ms("messages.replay_window")
        self._stranger_answers = TokenBucket(UNAUTHENTICATED_ANSWER_RATE, UNAUTHENTICATED_ANSWER_BURST)
        self._friend_answers: dict[bytes, TokenBucket] = {}  # by claimed friend id (at most one per friend)
        self._probe_answers: OrderedDict[str, TokenBucket] = OrderedDict()  # by source, LRU order
        self._probe_answers_total = TokenBucket(PROBE_ANSWER_TOTAL_RATE, int(PROBE_ANSWER_TOTAL_RATE))
        self._reject_logs = TokenBucket(REJECT_LOG_RATE, REJECT_LOG_BURST)

    async def handle(self, data: bytes, source: IngressSource) -> bytes:
        """One envelope in, one serialized SignedAck out (empty: no answer)."""
        (o,) = await self.process([data], source)
        if not self._may_answer([o]):
            return b""
        return env.make_ack(
            self.node.identity,
            message_id=o.message_id,
            to_node_id=o.sender,
            envelope_hash=o.envelope_hash,
            status=o.status,
            reason=o.reason,
            detail=o.detail,
        )

    async def handle_batch(self, envelopes: list[bytes], source: IngressSource, nonce: bytes = b"") -> bytes:
        """Envelopes from one sender in, one serialized batch SignedAck out
        (empty: no answer). ``nonce`` is echoed in the signed answer."""
        if len(envelopes) > MAX_BATCH:
            envelopes = envelopes[:MAX_BATCH]  # the rest get no entry: the sender retries them
        if len(nonce) > MAX_NONCE_LEN:
            return b""
        outcomes = await self.process(envelopes, source)
        if not (self._may_answer(outcomes) if outcomes else self._may_answer_probe(source)):
            return b""
        sender = next((o.sender for o in outcomes if o.sender), b"")
        entries = [o.ack_entry() for o in outcomes]
        return env.make_ack_batch(self.node.identity, to_node_id=sender, entries=entries, nonce=nonce)

    def _may_answer(self, outcomes: list[Outcome]) -> bool:
        """Sign an answer that carries an authenticated outcome; any other only
        within the budget (claiming a friend's id costs nothing to a forger)."""
        if any(o.authenticated for o in outcomes):
            return True
        claimed = next((o.sender for o in outcomes if o.sender), b"")
        if claimed not in self.node.friends:
            return self._stranger_answers.take()
        bucket = self._friend_answers.get(claimed)
        if bucket is None:
            if len(self._friend_answers) > len(self.node.friends):  # friends were removed
                self._friend_answers = {
                    f: b for f, b in self._friend_answers.items() if f in self.node.friends
                }
            bucket = self._friend_answers[claimed] = TokenBucket(
                UNAUTHENTICATED_ANSWER_RATE, UNAUTHENTICATED_ANSWER_BURST
            )
        return bucket.take()

    def _may_answer_probe(self, source: IngressSource) -> bool:
        buckets = self._probe_answers
        bucket = buckets.get(source.peer)
        if bucket is None:
            bucket = buckets[source.peer] = TokenBucket(PROBE_ANSWER_RATE, PROBE_ANSWER_BURST)
            if len(buckets) > PROBE_SOURCES:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(source.peer)
        return bucket.take() and self._probe_answers_total.take()

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
                outcomes[i] = self._reject(b"", b"", data, source, Rejected(err.code, str(err)))
                continue
            if batch_sender is None:
                batch_sender = parsed.from_node_id
            try:
                if parsed.from_node_id != batch_sender:
                    raise Rejected(Reason.MALFORMED, "a batch must carry one sender's envelopes")
                self._precheck(parsed, source, now)
            except Rejected as rej:
                outcomes[i] = self._reject_parsed(parsed, source, rej)
                continue
            candidates.append((i, parsed))
        if not candidates:
            return [o for o in outcomes if o is not None]
        # 3b. duplicates of (sender, message_id): one lookup for the whole batch.
        seen = await node.db_batch(
            node.store.seen_check_many, [(p.from_node_id, p.message_id) for _, p in candidates]
        )
        accepted: list[tuple[int, ReceivedMessage]] = []
        first: dict[tuple[bytes, bytes], tuple[int, bytes]] = {}  # key -> (index, digest) in this batch
        repeats: list[tuple[int, int, env.ParsedEnvelope]] = []  # (index, index of the first copy, repeat)
        for i, parsed in candidates:
            key = (parsed.from_node_id, parsed.message_id)
            try:
                if key in first:  # a repeat in this batch: the first copy's outcome, once it has one
                    index, digest = first[key]
                    self._authenticate_repeat(parsed, digest)
                    repeats.append((i, index, parsed))
                    continue
                if key in seen:
                    self._authenticate_repeat(parsed, seen[key])
                    outcomes[i] = _authentic(
                        parsed.message_id, parsed.from_node_id, parsed.raw, parsed.digest, DUPLICATE
                    )
                    continue
                message = await self._admit(parsed, source, now)
            except Rejected as rej:
                outcomes[i] = self._reject_parsed(parsed, source, rej)
                continue
            first[key] = (i, parsed.digest)
            accepted.append((i, message))
        # 8. deliver durably to the sinks, record the ids, then answer.
        if accepted:
            refused: set[int] = set()  # id() of the messages a sink had no quota for
            try:
                refused = {id(m) for m in await node.deliver_many([m for _, m in accepted])}
                status, reason, detail = ACCEPTED, "", ""
            except Exception as err:  # a sink failed: the sender retries later
                log.exception("delivery of %d message(s) failed", len(accepted))
                status, reason, detail = REJECTED, Reason.SINK_FAILED, f"delivery failed: {err}"
                node.metrics_rejected(reason)
            for i, m in accepted:
                raw, digest = envelopes[i], m.envelope_hash
                if id(m) in refused:
                    over_quota = Rejected(Reason.QUOTA_EXCEEDED, QUOTA_DETAIL)
                    over_quota.authenticated = True
                    outcomes[i] = self._reject(m.message_id, m.from_node_id, raw, source, over_quota)
                else:
                    outcomes[i] = _authentic(
                        m.message_id, m.from_node_id, raw, digest, status, reason, detail
                    )
        for i, index, parsed in repeats:
            decided = outcomes[index]
            assert decided is not None
            outcomes[i] = decided.repeated_by(parsed)
        return [o for o in outcomes if o is not None]

    def _reject_parsed(self, parsed: env.ParsedEnvelope, source: IngressSource, rej: Rejected) -> Outcome:
        outcome = self._reject(parsed.message_id, parsed.from_node_id, parsed.raw, source, rej)
        outcome.digest = parsed.digest
        return outcome

    def _reject(
        self, message_id: bytes, sender: bytes, raw: bytes, source: IngressSource, rej: Rejected
    ) -> Outcome:
        reason, detail = rej.reason, rej.detail
        if rej.authenticated or self._reject_logs.take():
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
        return Outcome(message_id, sender, REJECTED, reason, detail, raw=raw, authenticated=rej.authenticated)

    def _precheck(self, parsed: env.ParsedEnvelope, source: IngressSource, now: int) -> None:
        """Steps 1-3a: recipient, strangers, plugin prechecks (no crypto yet), timestamp window."""
        node = self.node
        if parsed.to_node_id != node.identity.node_id:
            raise Rejected(Reason.WRONG_RECIPIENT, "envelope is addressed to another node")
        friend = node.friends.get(parsed.from_node_id)
        if friend is None:
            self._check_invite(parsed, now)
        meta = IngressMeta(
            message_id=parsed.message_id,
            from_node_id=parsed.from_node_id,
            to_node_id=parsed.to_node_id,
            timestamp_ms=parsed.timestamp_ms,
            size=len(parsed.raw),
            has_invite=friend is None,  # a stranger gets here only naming an active invite
            friend=friend,
            invite_token_id=parsed.invite_token_id,
        )
        _raise_first(node.pm.hook.tmax_ingress_precheck(meta=meta, source=source, node=node))
        if abs(now - parsed.timestamp_ms) > self.window_ms:
            raise Rejected(Reason.STALE_TIMESTAMP, f"timestamp is outside the {self.window_ms} ms window")

    def _check_invite(self, parsed: env.ParsedEnvelope, now: int) -> IssuedToken:
        """A stranger must name an invite this node issued that is still active,
        and prove it holds its token: a dict lookup and an HMAC, so a flood of
        strangers (even with a token id seen on the wire) costs no public-key
        operation."""
        token_id = parsed.invite_token_id
        if not token_id:
            raise Rejected(Reason.UNKNOWN_SENDER, "not a friend and no invite token")
        issued = self.node.issued_invites.get(token_id)
        if issued is None:
            raise Rejected(Reason.INVITE_UNKNOWN, "not a friend, and the invite was not issued by this node")
        invite = issued.invite
        if invite.revoked:
            raise Rejected(Reason.INVITE_REVOKED, f"invite {token_id.hex()} was revoked")
        if now >= invite.expires_at_ms:
            raise Rejected(Reason.INVITE_EXPIRED, f"invite {token_id.hex()} has expired")
        if invite.uses_left is not None and invite.uses_left <= 0:
            raise Rejected(Reason.INVITE_USED, f"invite {token_id.hex()} has already been used")
        if not parsed.proves_invite(issued.proof_key):
            raise Rejected(
                Reason.INVITE_INVALID, "the envelope does not prove that its sender holds the token"
            )
        return issued

    def _authenticate_repeat(self, parsed: env.ParsedEnvelope, accepted_hash: bytes | None) -> None:
        """A (sender, message_id) seen before is a duplicate only if this
        envelope is the sender's: the very bytes accepted then, or a valid
        signature by the friend's key (a re-sealed retry)."""
        if accepted_hash is not None and hmac.compare_digest(accepted_hash, parsed.digest):
            return
        friend = self.node.friends.get(parsed.from_node_id)
        if friend is None or friend.public_key != parsed.sender_public_key:
            raise Rejected(Reason.KEY_CHANGED, "sender key differs from the friend's known key")
        try:
            env.verify(parsed, key_is_bound=True)
        except EnvelopeError as err:
            raise Rejected(err.code, str(err)) from None

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
        try:
            return await self._admit_verified(parsed, source, now, friend)
        except Rejected as rej:
            rej.authenticated = True
            raise

    async def _admit_verified(
        self, parsed: env.ParsedEnvelope, source: IngressSource, now: int, friend: Friend | None
    ) -> ReceivedMessage:
        """Steps 5-7 for an envelope whose signature verified as the sender's."""
        node = self.node
        # 5. first contact: the token id must name an active invite of ours
        #    (checked again: another first contact may have used it meanwhile).
        invite = issued = None
        if friend is None:
            issued = self._check_invite(parsed, now)
            invite = issued.invite
            friend = Friend(
                node_id=parsed.from_node_id,
                public_key=parsed.sender_public_key,
                scopes=list(invite.scopes),
                rate_limit=invite.rate_limit,
                added_at_ms=now,
            )
        # 6. decrypt; on first contact the token sealed inside must be that invite's.
        try:
            content = env.open_content(node.identity, parsed)
        except EnvelopeError as err:
            raise Rejected(err.code, str(err)) from None
        if issued is not None:
            self._check_sealed_token(issued, content.invite)
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
            envelope_hash=parsed.digest,
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
        _raise_first(node.pm.hook.tmax_ingress_check(message=message, friend=friend, node=node))
        card = content.contact if content.HasField("contact") else None
        if invite is not None:
            message.from_alias = await self._befriend(invite, friend, card, now)
        elif card is not None:
            await node.update_contact(friend, list(card.relay_hosts), list(card.endpoints))
        return message

    def _check_sealed_token(self, issued: IssuedToken, sealed: bytes) -> None:
        """The token the sender sealed must be the one issued under the token
        id it named in the clear: holding the token is the capability, and
        only the inviter and the invitee have seen it."""
        if not sealed:
            raise Rejected(Reason.INVITE_INVALID, "first contact without the invite token sealed inside")
        if not hmac.compare_digest(sealed, issued.raw):
            raise Rejected(Reason.INVITE_INVALID, "the sealed token is not the one issued under its id")

    async def _befriend(
        self, invite: IssuedInvite, friend: Friend, card: mesh_pb2.ContactCard | None, now: int
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
        finally:
            await node.invites_changed()
        node.friend_changed(friend)
        log.info(
            "new friend %s (%s) via invite %s",
            to_checksum(friend.node_id),
            friend.alias,
            invite.token_id.hex(),
        )
        return friend.alias


def _raise_first(verdicts: list[Verdict | None]) -> None:
    for verdict in verdicts:
        if verdict is not None:
            raise Rejected(verdict.reason, verdict.detail)
