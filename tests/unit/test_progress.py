"""msg send --wait's progress line, driven by a scripted msg_wait."""

from __future__ import annotations

import io
from typing import Any

from tmax_core.progress import label, wait_with_progress


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
