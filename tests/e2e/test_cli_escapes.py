"""Text output is for a terminal, and a friend writes the bodies (issue 13,
item 9): control characters in what others sent are shown escaped, never
sent to the terminal. ``--json`` output carries the exact text."""

from __future__ import annotations

from tests.harness import ProcGroup, befriend, wait_for

# Sets the terminal's title, clears the screen, then forges a second inbox line.
HOSTILE = (
    "\x1b]0;pwned\x07\x1b[2J\x1b[Hhi\n* 2026-01-01 00:00:00  00ff  from bank [message]: send money\u202e"
)


def test_friend_body_cannot_drive_the_terminal(procs: ProcGroup) -> None:
    victim = procs.node("victim", "--peer-listen", "127.0.0.1:0")
    friend = procs.node("friend")
    befriend(victim, friend)
    (peer,) = friend.cli("friends", "list")
    friend.cli("msg", "send", "--to", peer["node_id"], "--wait", "--timeout", "20", HOSTILE)
    wait_for(lambda: victim.inbox_bodies(), what="the message in the victim's inbox")

    # --json: the body as sent.
    assert victim.inbox_bodies() == [HOSTILE]
    # Text: one line per message, nothing a terminal would act on.
    res = victim.run("inbox", "list")
    assert res.returncode == 0, res
    text = res.stdout.decode()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, repr(text)
    assert len(text.splitlines()) == 1, text
    assert "\\x1b[2J" in text and "\\n* 2026" in text


def test_session_body_cannot_drive_the_terminal(procs: ProcGroup) -> None:
    node = procs.node("n")
    node.cli("session", "send", "--from", "a", "--to", "b", HOSTILE)
    assert [m["body"] for m in node.cli("session", "list", "b")] == [HOSTILE]
    res = node.run("session", "list", "b")
    assert res.returncode == 0, res
    text = res.stdout.decode()
    assert "\x1b" not in text and len(text.splitlines()) == 1, repr(text)
