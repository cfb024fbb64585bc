"""msg send --wait's progress line, driven by a scripted msg_wait."""

from __future__ import annotations

import io
from typing import Any

from tmax_core.progress import MAX_ERROR_CHARS, label, wait_with_progress


def state(status: str, path: str | None = None, error: str | None = None) -> dict[str, Any]:
    return {"message_id": "ab" * 16, "status": status, "path": path, "error": error}


def test_each_new_step_is_appended_once() -> None:
    answers = iter(
        [
            state("queued"),  # the same again: not repeated
            state("queued", error="relay: connection refused"),
            state("sent", "relay"),
            state("sent", "relay"),
            state("delivered", "relay"),
        ]
    )
    asked: list[float] = []

    def wait(message_id: str, seconds: float) -> dict[str, Any]:
        asked.append(seconds)
        return next(answers)

    out = io.StringIO()
    final = wait_with_progress(wait, state("queued"), 30, out)
    assert final["status"] == "delivered"
    assert out.getvalue() == (
        "queued → queued, retrying (relay: connection refused) → sent via relay → delivered via relay\n"
    )
    assert len(asked) == 5 and all(0 < s <= 0.5 for s in asked)


def test_stops_at_the_timeout_and_ends_the_line() -> None:
    out = io.StringIO()
    final = wait_with_progress(lambda _id, _s: state("queued"), state("queued"), 0.01, out)
    assert final["status"] == "queued" and out.getvalue() == "queued\n"


def test_failed_says_why() -> None:
    assert label(state("failed", "direct", "rejected: blocked")) == "failed: rejected: blocked"
    assert label(state("delivered", "direct")) == "delivered via direct"


def test_the_progress_line_escapes_what_a_relay_or_recipient_wrote() -> None:
    """The error text comes from relays and recipients: on a terminal it must
    not become escape sequences (set the title, clear the screen, move up)."""
    evil = "relay: relay grpc://h:7447: queue_full: \x1b]0;owned\x07\x1b[2J\x1b[1A"
    states = iter([{"message_id": "m", "status": "failed", "error": evil, "path": None}])
    out = io.StringIO()
    wait_with_progress(lambda _id, _s: next(states), {"message_id": "m", "status": "queued"}, 5.0, out)
    shown = out.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown, repr(shown)
    assert "queue_full: \\x1b]0;owned\\x07" in shown


def test_a_long_error_is_cut_on_the_progress_line() -> None:
    state = {"message_id": "m", "status": "queued", "error": "x" * 5000}
    assert len(label(state)) < MAX_ERROR_CHARS + 30
