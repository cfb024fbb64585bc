"""One-time ECDH key pairs made ahead of time.

Sealing a message needs a fresh ephemeral key pair and its ECDH secret with
the recipient's key: two EC multiplications, about half of what a seal costs.
:class:`EphemeralPool` keeps a few of them per recipient key, made on the
node's crypto thread after a send to that recipient, so that the next message
does not wait for them.

Each pair is handed out once and then dropped. The ephemeral private scalar is
never kept (only the public key and the derived secret are), so every message
still has its own key and forward secrecy is what it is without the pool; the
waiting secrets live in the node's memory, next to its long-term key. Bounded:
``per_key`` pairs for at most ``max_keys`` recipient keys, least recently
refilled dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from tmax_core import crypto

Pair = tuple[bytes, bytes]  # (ephemeral compressed public key, ECDH secret with the recipient)


class EphemeralPool:
    def __init__(self, per_key: int = 4, max_keys: int = 256) -> None:
        self.per_key = per_key
        self.max_keys = max_keys
        self._pairs: OrderedDict[bytes, deque[Pair]] = OrderedDict()

    def take(self, peer_public_key: bytes) -> Pair:
        """A pair made ahead for this key if one is left, else a new one now.
        ValueError if the key is not a valid public key."""
        pairs = self._pairs.get(peer_public_key)
        if pairs:
            try:
                return pairs.popleft()  # atomic: safe against a concurrent fill
            except IndexError:
                pass
        return crypto.ephemeral_ecdh(peer_public_key)

    def wants(self, peer_public_key: bytes) -> bool:
        """True if a :meth:`fill` for this key would add pairs."""
        pairs = self._pairs.get(peer_public_key)
        return pairs is None or len(pairs) < self.per_key

    def fill(self, peer_public_key: bytes) -> None:
        """Top this key's pairs up to ``per_key`` (CPU-bound: run it off the event loop)."""
        pairs = self._pairs.get(peer_public_key)
        if pairs is None:
            pairs = self._pairs[peer_public_key] = deque()
            while len(self._pairs) > self.max_keys:
                self._pairs.popitem(last=False)
        else:
            self._pairs.move_to_end(peer_public_key)
        while len(pairs) < self.per_key:
            pairs.append(crypto.ephemeral_ecdh(peer_public_key))
