"""``msg send --wait`` on a terminal: the message's progress on one stderr
line as it changes (``queued → sent via relay → delivered via relay``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from tmax_core.printable import printable

STEP_S = 0.5
"""Longest a single wait on the node lasts before the line is brought up to date."""

MAX_ERROR_CHARS = 200
"""An error on the progress line is cut to this (``msg status --json`` has it whole)."""


def _error(state: dict[str, Any]) -> str:
    """The state's error as the terminal may show it: the text comes from relays
    and recipients (a hostile one writes escape sequences), so it is escaped and cut."""
    text = printable(str(state.get("error") or ""))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def label(state: dict[str, Any]) -> str:
    """One step of the progress line for a ``msg status``-shaped dict."""
    status, path = printable(str(state["status"])), printable(str(state.get("path") or ""))
    if status == "failed":
        return f"failed: {_error(state) or 'unknown error'}"
    if status == "queued" and state.get("error"):
        return f"queued, retrying ({_error(state)})"
    return f"{status} via {path}" if path and status != "queued" else status


def wait_with_progress(
    wait: Callable[[str, float], dict[str, Any]], sent: dict[str, Any], timeout_s: float, out: TextIO
) -> dict[str, Any]:
    """Wait (``wait(message_id, seconds)`` is the client's ``msg_wait``) until
    the message is delivered or failed or ``timeout_s`` passed, writing each
    new step to ``out``; returns the last state."""
    deadline = time.monotonic() + timeout_s
    state, shown = sent, label(sent)
    out.write(shown)
    out.flush()
    try:
        while state["status"] not in ("delivered", "failed"):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            state = wait(sent["message_id"], min(STEP_S, left))
            if (step := label(state)) != shown:
                shown = step
                out.write(f" → {step}")
                out.flush()
    finally:
        out.write("\n")
        out.flush()
    return state
