"""Hook implementations of the example plugin ``task_update``.

It registers one invite scope, ``task_update``, for structured task status
updates between agents. The core does the rest:

* ``tmax-mesh invite create --scope message --scope task_update`` grants it;
* a message sent with ``--scope task_update`` is accepted only from friends
  granted the scope (otherwise the sender sees ``scope_not_granted``), only by
  nodes that have this plugin (otherwise ``unknown_scope``), and only if
  :func:`validate` accepts its payload (otherwise ``payload_invalid``).

Payload: content type ``application/json`` (a ``charset`` parameter, if any,
must be utf-8) and a body that is a UTF-8 JSON object::

    {"task": "build #42", "state": "done", "note": "all green"}

``task`` (required) is a non-empty string; ``state`` (required) is one of
:data:`STATES`; ``note`` (optional) is a string. Other fields are allowed and
ignored, so newer senders can add fields without breaking older receivers.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tmax_core.model import InviteScope
from tmax_core.plugin import hookimpl

SCOPE = "task_update"
CONTENT_TYPE = "application/json"
STATES = ("todo", "in_progress", "blocked", "done", "cancelled")
MAX_TASK_LEN = 200
MAX_NOTE_LEN = 4000


def validate(content_type: str, body: bytes) -> None:
    """Accept a task update payload or raise ``ValueError`` with a one-line reason.

    Runs on the receiving node after the message is verified and decrypted;
    the reason is what the sender sees after ``payload_invalid``.
    """
    media_type, *params = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != CONTENT_TYPE:
        raise ValueError(f"task_update needs content type {CONTENT_TYPE}, got {content_type!r}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ValueError(f"task_update bodies are UTF-8, got charset {value.strip()!r}")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("task_update body is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"task_update body is not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"task_update body must be a JSON object, got {type(data).__name__}")
    task = data.get("task")
    if not isinstance(task, str) or not task.strip():
        raise ValueError('task_update needs "task": a non-empty string')
    if len(task) > MAX_TASK_LEN:
        raise ValueError(f'task_update "task" is longer than {MAX_TASK_LEN} characters')
    state = data.get("state")
    if state not in STATES:
        raise ValueError(f'task_update "state" must be one of {", ".join(STATES)}; got {state!r}')
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise ValueError('task_update "note" must be a string')
    if note is not None and len(note) > MAX_NOTE_LEN:
        raise ValueError(f'task_update "note" is longer than {MAX_NOTE_LEN} characters')


@hookimpl
def tmax_register_invite_scopes(register: Callable[[InviteScope], None]) -> None:
    register(InviteScope(SCOPE, "structured task status updates (JSON: task, state, note)", validate))
