"""``tmax-mesh session send|list|ack|delete|unread``: local session mailboxes.

```
tmax-mesh session send --from NAME --to SESSION BODY   -> message object
tmax-mesh session list SESSION [--unread] [--limit N]  -> [message object]
tmax-mesh session ack SESSION ID... [--from NODE] | --all       -> {"session", "acked"}
tmax-mesh session delete SESSION ID... [--from NODE] | --acked  -> {"session", "deleted"}
tmax-mesh session unread SESSION                       -> {"session", "unread"}
    message object: {"message_id", "session", "origin" (local|remote),
      "from_session", "from_node_id", "from_alias", "sent_at_ms",
      "received_at_ms", "scope", "content_type", "body", "acked", "reply_to"}
      (+ "body_encoding": "base64" for a body that is not text)
```
"""

from __future__ import annotations

import argparse
from typing import Any

from tmax_core.errors import UsageError
from tmax_core.plugin.helpers import CommandRegistry, Context, fmt_time, non_negative_int, read_body
from tmax_mesh_session_mailbox.client import SessionMailboxClient


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("send", help="send a message from one local session to another")
    s.add_argument("--from", dest="from_session", required=True, metavar="NAME", help="sending session")
    s.add_argument("--to", dest="to_session", required=True, metavar="SESSION", help="receiving session")
    s.add_argument("--content-type", default="", help="content type (default text/plain)")
    s.add_argument("--reply-to", default="", help="message id this answers")
    s.add_argument("body", help="message text, or - to read stdin")
    ls = sub.add_parser("list", help="messages in a session's mailbox, oldest first")
    ls.add_argument("session")
    ls.add_argument("--unread", action="store_true", help="only messages not acked yet")
    ls.add_argument("--limit", type=non_negative_int, default=0, help="at most N messages (0 = all)")
    a = sub.add_parser("ack", help="mark messages of a session read")
    a.add_argument("session")
    a.add_argument("message_ids", nargs="*", metavar="ID")
    a.add_argument("--all", action="store_true", help="every message of the session")
    d = sub.add_parser("delete", help="delete messages of a session, read or not (frees their quota)")
    d.add_argument("session")
    d.add_argument("message_ids", nargs="*", metavar="ID")
    d.add_argument("--acked", action="store_true", help="every message of the session already acked")
    for cmd in (a, d):
        cmd.add_argument(
            "--from",
            dest="sender",
            default="",
            metavar="NODE",
            help="only the messages from this node id or friend alias (needed when two senders used one id)",
        )
    u = sub.add_parser("unread", help="count a session's unread messages")
    u.add_argument("session")


def run(args: argparse.Namespace, ctx: Context) -> Any:
    with SessionMailboxClient(ctx.socket) as client:
        if args.action == "send":
            return client.send(
                args.from_session,
                args.to_session,
                read_body(args.body),
                content_type=args.content_type,
                reply_to=args.reply_to,
            )
        if args.action == "list":
            return client.list(args.session, unread=args.unread, limit=args.limit)
        if args.action == "ack":
            if args.all == bool(args.message_ids):
                raise UsageError("give message ids to ack, or --all (not both)")
            return client.ack(args.session, args.message_ids, all=args.all, sender=args.sender)
        if args.action == "delete":
            if args.acked == bool(args.message_ids):
                raise UsageError("give the ids of the messages to delete, or --acked (not both)")
            return client.delete(args.session, args.message_ids, acked=args.acked, sender=args.sender)
        return client.unread(args.session)


def render_message(m: dict[str, Any]) -> str:
    mark = " " if m["acked"] else "*"
    if m["origin"] == "local":
        who = f"session {m['from_session']}"
    else:
        who = f"{m['from_alias'] or m['from_node_id']} [{m['scope']}]"
    body = m["body"] if "body_encoding" not in m else f"<{m['content_type']}, base64> {m['body']}"
    return f"{mark} {fmt_time(m['received_at_ms'])}  {m['message_id']}  from {who}: {body}"


def render(obj: Any) -> str:
    if isinstance(obj, list):
        return "\n".join(render_message(m) for m in obj) or "(no messages)"
    if "acked" in obj and "message_id" not in obj:
        return f"acked {obj['acked']} in session {obj['session']}"
    if "deleted" in obj:
        return f"deleted {obj['deleted']} in session {obj['session']}"
    if "unread" in obj:
        return f"{obj['unread']} unread in session {obj['session']}"
    return f"sent {obj['message_id']} to session {obj['session']}"


def register(cli: CommandRegistry) -> None:
    cli.add("session", "local session mailboxes: send, list, ack, delete, unread", configure, run, render)
