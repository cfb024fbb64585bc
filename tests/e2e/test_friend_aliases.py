"""Names a friend suggests for itself (issue 13, item 9): an invite's alias
and a contact card's alias are someone else's input. They are held to the
rules of local aliases, and a bad one falls back to a generated name instead
of failing the friendship."""

from __future__ import annotations

import re

from tests.harness import ProcGroup, befriend
from tmax_core.identity import NodeIdentity
from tmax_core.invites import create_invite

HOUR_MS = 3_600_000


def crafted_invite(alias: str) -> str:
    """An invite from a node the test made up, suggesting ``alias``."""
    return create_invite(NodeIdentity.generate(), ttl_ms=HOUR_MS, alias=alias).token


def test_friend_alias_cannot_pose_as_another_node(procs: ProcGroup) -> None:
    victim = procs.node("victim")
    bob = procs.node("bob", "--peer-listen", "127.0.0.1:0")
    befriend(bob, victim, alias="bob")

    # An alias written like a node id: the victim's listings would show
    # another node's id for this friend's messages.
    posing = victim.cli("invite", "accept", crafted_invite(bob.node_id))
    assert not posing["alias"].lower().startswith("0x"), posing
    # Control characters (an ANSI escape that clears the screen).
    ansi = victim.cli("invite", "accept", crafted_invite("\x1b[2J\x1b[Hbob"))
    assert ansi["alias"] and not re.search(r"[\x00-\x1f\x7f]", ansi["alias"]), ansi
    # A case variant of a friend's alias is another name, not a failed friendship.
    shadow = victim.cli("invite", "accept", crafted_invite("BOB"))
    assert shadow["alias"].lower() != "bob", shadow

    aliases = {f["node_id"]: f["alias"] for f in victim.cli("friends", "list")}
    assert aliases[bob.node_id] == "bob"
    assert victim.cli("msg", "send", "--to", "bob", "still bob")["message_id"]
    # The generated name says who it is.
    assert posing["alias"] == f"peer-{posing['node_id'][2:10].lower()}"


def test_friend_names_ignore_ascii_case_as_the_store_does(procs: ProcGroup) -> None:
    """Issue 14, item 5: one rule (:func:`tmax_core.aliases.alias_key`) for
    typing a friend's name and for a friend's suggested name."""
    alice = procs.node("alice")
    bob = procs.node("bob", "--peer-listen", "127.0.0.1:0")
    other = procs.node("other", "--peer-listen", "127.0.0.1:0")
    befriend(bob, alice, alias="bob")

    # An invite suggesting "Bob" while "bob" is a friend: the next free name, not alias_taken.
    suggested = alice.cli("invite", "accept", other.invite("--alias", "Bob"))
    assert suggested["alias"] == "Bob-2", suggested

    blocked = alice.cli("friends", "block", "BOB")
    assert (blocked["node_id"], blocked["blocked"]) == (bob.node_id, True)
    assert alice.cli("friends", "block", "bob-2")["node_id"] == other.node_id
    assert {f["alias"]: f["blocked"] for f in alice.cli("friends", "list")} == {"bob": True, "Bob-2": True}
