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

Each node has its own :class:`~tmax_mesh_ratelimit.limiter.RateLimiter`, made
from its config on first use and kept in its plugin state
(:meth:`tmax_core.plugin.NodeAPI.plugin_state`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmax_core.plugin import hookimpl
from tmax_core.plugin.helpers import validate_positive
from tmax_mesh_ratelimit.limiter import RateLimiter

if TYPE_CHECKING:
    from tmax_core.model import Friend, IngressMeta, IngressSource, ReceivedMessage, Verdict
    from tmax_core.plugin import NodeAPI
    from tmax_core.plugin.helpers import ConfigRegistry

PLUGIN = "ratelimit"


def limiter_for(node: NodeAPI) -> RateLimiter:
    """The node's limiter, made from its ``ratelimit.*`` config on first use."""

    def make() -> RateLimiter:
        cfg = node.config
        return RateLimiter(
            rate=cfg.get("ratelimit.rate"),
            burst=cfg.get("ratelimit.burst"),
            source_rate=cfg.get("ratelimit.source_rate"),
            source_burst=cfg.get("ratelimit.source_burst"),
            max_buckets=cfg.get("ratelimit.max_buckets"),
        )

    return node.plugin_state(PLUGIN, make)


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
def tmax_ingress_precheck(meta: IngressMeta, source: IngressSource, node: NodeAPI) -> Verdict | None:
    return limiter_for(node).precheck(meta, source)


@hookimpl
def tmax_ingress_check(message: ReceivedMessage, friend: Friend, node: NodeAPI) -> Verdict | None:
    if friend.node_id not in node.friends:  # first contact: not a stored friend yet
        return None
    return limiter_for(node).charge_verified(friend.node_id, friend.rate_limit)
