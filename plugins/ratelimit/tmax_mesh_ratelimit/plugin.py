"""Hook implementations of the ``ratelimit`` plugin: token buckets at ingress.

Two kinds of bucket (DESIGN §8, §12):

* **per transport source** — keyed by ``(source.transport, source.peer)``:
  the remote IP for direct connections (an IPv6 address by its /64, since one
  host can rotate through its whole /64; :func:`tmax_core.netaddr.source_key`),
  the relay-authenticated node id for relayed frames. ``ratelimit.source_rate`` / ``ratelimit.source_burst``.
  Every inbound envelope is charged here in ``tmax_ingress_precheck``, before
  any crypto, so a flood costs at most ``source_rate`` signature checks per
  second per source. Unknown senders (first contact with an invite) are
  charged to this bucket only.
* **per friend** — keyed by the friend's node id, with the parameters the
  friend's invite granted (``Friend.rate_limit``) or else ``ratelimit.rate`` /
  ``ratelimit.burst``.

Why the friend bucket is *checked* before crypto but *charged* after it
-----------------------------------------------------------------------
Before the signature is verified, ``from_node_id`` is only a claim. If the
precheck took a token from friend X's bucket, anyone who can reach us could
send junk envelopes claiming to be X and starve X's genuine messages. Keying
the bucket by ``(claimed id, source)`` only helps when the forger's source
differs from X's: two machines behind one NAT, or anything on loopback, share
an IP, and a relay's stamp only helps on the relay path.

So the precheck only *looks* at X's bucket (an empty one rejects cheaply,
with no crypto), and a token is taken in ``tmax_ingress_check``, which the
core runs only after the signature and the id/key binding verified and the
content decrypted. Forged envelopes fail verification (``bad_signature``,
``id_key_mismatch``) and never reach it, so they cannot touch X's allowance,
whatever their source. Replays are answered ``duplicate`` (or ``stale``)
before that point too, so a captured envelope is charged at most once.
Verified messages that a later policy check rejects are still charged: they
did come from X and cost us a decryption. The first verified message of a
new friend (the first-contact message) is not charged to its new bucket.

Two consequences, stated honestly:

* The cost of a forged flood is bounded by the **source** bucket, not the
  friend bucket. A forger that *shares X's source* (same IP, e.g. loopback or
  one NAT) can exhaust that shared source bucket and so delay X too; a forger
  on another source cannot. Relayed frames are keyed by the relay-stamped
  sender, so on the relay path no other node shares X's source bucket.
* Concurrent envelopes from X may all pass the precheck on the last token;
  the charge after verification is authoritative and rejects the extra ones
  (after crypto, bounded by the source bucket).

Memory: at most ``ratelimit.max_buckets`` buckets in total (full buckets are
evicted first, then the least recently used source buckets, see
:class:`~tmax_mesh_ratelimit.limiter.RateLimiter`). Buckets refill lazily from
``time.monotonic``: no background task.

Hooks get no node, so the limiter is created in ``tmax_node_started`` (which
reads ``node.config``) and kept per node id; ``precheck``/``check`` find it
by the envelope's ``to`` id (ingress has already checked it is this node).
With no node started, every check passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmax_core.config import validate_positive
from tmax_core.plugin import hookimpl
from tmax_mesh_ratelimit.limiter import RateLimiter

if TYPE_CHECKING:
    from tmax_core.config import ConfigRegistry
    from tmax_core.model import Friend, IngressMeta, IngressSource, ReceivedMessage, Verdict


class RateLimitPlugin:
    """Limiters of the nodes running in this process, by node id."""

    def __init__(self) -> None:
        self._limiters: dict[bytes, tuple[Any, RateLimiter]] = {}

    def start(self, node: Any) -> RateLimiter:
        cfg = node.config
        limiter = RateLimiter(
            rate=cfg.get("ratelimit.rate"),
            burst=cfg.get("ratelimit.burst"),
            source_rate=cfg.get("ratelimit.source_rate"),
            source_burst=cfg.get("ratelimit.source_burst"),
            max_buckets=cfg.get("ratelimit.max_buckets"),
        )
        self._limiters[node.identity.node_id] = (node, limiter)
        return limiter

    def stop(self, node: Any) -> None:
        self._limiters.pop(node.identity.node_id, None)

    def limiter(self, node_id: bytes) -> RateLimiter | None:
        entry = self._limiters.get(node_id)
        return None if entry is None else entry[1]

    def precheck(self, meta: IngressMeta, source: IngressSource) -> Verdict | None:
        limiter = self.limiter(meta.to_node_id)
        return None if limiter is None else limiter.precheck(meta, source)

    def check(self, message: ReceivedMessage, friend: Friend) -> Verdict | None:
        entry = self._limiters.get(message.to_node_id)
        if entry is None:
            return None
        node, limiter = entry
        if friend.node_id not in node.friends:  # first contact: not a stored friend yet
            return None
        return limiter.charge_verified(friend.node_id, friend.rate_limit)


STATE = RateLimitPlugin()


@hookimpl
def tmax_add_config(registry: ConfigRegistry) -> None:
    add = registry.add
    add(
        "ratelimit.rate",
        float,
        10.0,
        "messages per second accepted per friend (when its invite sets no limit)",
        validate=validate_positive,
    )
    add(
        "ratelimit.burst",
        int,
        100,
        "token bucket size per friend (when its invite sets no limit)",
        validate=validate_positive,
    )
    add(
        "ratelimit.source_rate",
        float,
        50.0,
        "envelopes per second accepted per transport source (checked before any crypto)",
        validate=validate_positive,
    )
    add(
        "ratelimit.source_burst",
        int,
        200,
        "token bucket size per transport source",
        validate=validate_positive,
    )
    add(
        "ratelimit.max_buckets",
        int,
        10000,
        "most buckets kept in memory; full, then least recently used source buckets are evicted first",
        validate=validate_positive,
    )


@hookimpl
def tmax_node_started(node: Any) -> None:
    STATE.start(node)


@hookimpl
def tmax_node_stopping(node: Any) -> None:
    STATE.stop(node)


@hookimpl
def tmax_ingress_precheck(meta: IngressMeta, source: IngressSource) -> Verdict | None:
    return STATE.precheck(meta, source)


@hookimpl
def tmax_ingress_check(message: ReceivedMessage, friend: Friend) -> Verdict | None:
    return STATE.check(message, friend)
