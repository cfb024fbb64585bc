"""``tmax-mesh``: the command-line client (DESIGN §14).

Every command prints a readable form, or with ``--json`` the contract's JSON.
Errors are one line on stderr and a non-zero exit; ``--debug`` shows the
traceback. Plugins add commands through ``tmax_register_commands``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from tmax_core import __version__
from tmax_core.commands import CommandRegistry, Context
from tmax_core.completion import SHELLS
from tmax_core.completion import script as completion_script
from tmax_core.durations import parse_duration_ms
from tmax_core.errors import MeshError, UnreadableReply, UsageError
from tmax_core.humantime import local, local_and_relative, relative, span
from tmax_core.plugin.manager import create_plugin_manager, failed_plugins, list_plugins
from tmax_core.plugininstall import pip_argv, requirement, run_pip
from tmax_core.printable import bounded_printable, printable, printable_tree
from tmax_core.progress import wait_with_progress
from tmax_core.results import TRANSPORT_FIELDS

EXIT_ERROR = 1
EXIT_USAGE = 2
MAX_FIELD_CHARS = 200
"""Of one value in ``node status`` text (``--json`` has it whole)."""


# -- helpers -----------------------------------------------------------------------


fmt_time = local  # the name plugins' renderers import


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Columns padded to their widest cell, up to :data:`MAX_FIELD_CHARS` (a longer
    cell runs past its column: one long cell does not pad every row)."""
    if not rows:
        return "(none)"
    widths = [
        min(max(len(str(x)) for x in col), MAX_FIELD_CHARS) for col in zip(headers, *rows, strict=False)
    ]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(headers), *(line(r) for r in rows)])


def _is_time(key: str) -> bool:
    """Fields holding a point in time as epoch ms (``added_at_ms``, ``last_seen_ms``,
    ``registered_since_ms``, ``last_attempt_ms``)."""
    return key.endswith(("_at_ms", "_since_ms")) or (key.startswith("last_") and key.endswith("_ms"))


def _shown(key: str, value: Any) -> tuple[str, Any]:
    """A time field as ``added_at  2026-12-06 21:05:09 (3 min ago)``, anything else as is."""
    return (key.removesuffix("_ms"), local_and_relative(value)) if _is_time(key) else (key, value)


def kv(obj: dict[str, Any]) -> str:
    """``key  value`` lines; times (see :func:`_is_time`) as local time and how long ago."""
    obj = dict(_shown(k, v) for k, v in obj.items())
    width = max(len(k) for k in obj) if obj else 0
    out = []
    for k, v in obj.items():
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v) or "-"
        out.append(f"{k.ljust(width)}  {'-' if v is None else v}")
    return "\n".join(out)


def duration_arg(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def strict_json(result: Any, indent: int | None = None) -> str:
    """``result`` as JSON that any JSON reader takes: a NaN or an infinity (a double
    or a transport detail from whatever answers on the socket) is an UnreadableReply,
    not printed as ``NaN``/``Infinity``, which are not JSON."""
    try:
        return json.dumps(result, indent=indent, allow_nan=False)
    except ValueError:
        raise UnreadableReply("unreadable reply: a number JSON cannot carry (NaN or infinity)") from None


def read_body(text: str) -> bytes:
    return sys.stdin.buffer.read() if text == "-" else text.encode()


# -- built-in commands ---------------------------------------------------------------


def _render_friends(friends: list[dict]) -> str:
    return table(
        [
            [
                f["alias"] or "-",
                f["node_id"],
                "yes" if f["blocked"] else "no",
                ",".join(f["scopes"]),
                relative(f["last_seen_ms"]),
                ",".join(f["relay_hosts"] + f["endpoints"]) or "-",  # last: the one often long
            ]
            for f in friends
        ],
        ["ALIAS", "NODE ID", "BLOCKED", "SCOPES", "LAST SEEN", "REACH"],
    )


def _render_inbox(messages: list[dict]) -> str:
    return "\n".join(_render_message(m) for m in messages) or "(no messages)"


def _render_message(m: dict) -> str:
    who = m["from_alias"] or m["from_node_id"]
    mark = " " if m["acked"] else "*"
    body = m["body"] if "body_encoding" not in m else f"<{m['content_type']}, base64> {m['body']}"
    return f"{mark} {local(m['received_at_ms'])}  {m['message_id']}  from {who} [{m['scope']}]: {body}"


def _render_status(s: dict) -> str:
    lines = [
        kv(
            {
                "node id": s["node_id"],
                "friends": s["friends"],
                "peer listener": s["peer_listen"],
                "uptime": span(s["uptime_ms"] / 1000),
                "inbox unread": s["inbox_unread"],
                "outbox": ", ".join(f"{k} {v}" for k, v in sorted(s["outbox"].items())) or "empty",
                "sinks": s["sinks"],
            }
        ),
        "transports:",
    ]
    for t in s["transports"]:
        lines.extend(_render_transport(t))
    sends = {k.split(":", 1)[1]: v for k, v in s.get("counters", {}).items() if k.startswith("send:")}
    if sends:
        lines.append("sends: " + ", ".join(f"{_label(k)} {v}" for k, v in sends.items()))
    return "\n".join(lines)


def _render_transport(t: dict[str, Any]) -> list[str]:
    """One transport of ``node status``: its name, state and counters on one line,
    then a line per record it lists (relay ``hosts``, direct ``friends``) and per
    other nested field (direct ``punch``). Transports are plugins, so this
    follows the shape of what they report, as ``key=value`` pairs."""
    detail = {k: v for k, v in t.items() if k not in TRANSPORT_FIELDS}
    flat = {k: v for k, v in detail.items() if not isinstance(v, dict | list)}
    name, state = (_label(t[k]) for k in TRANSPORT_FIELDS)
    lines = [f"  {name:<8} {state:<12} {_fields(flat)}".rstrip()]
    for key, value in detail.items():
        label = _label(key)
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            lines.extend(f"    {label}: {_fields(item)}" for item in value)
        elif isinstance(value, dict) and all(isinstance(item, dict) for item in value.values()):
            lines.extend(f"    {label} {_label(k)}: {_fields(item)}" for k, item in value.items())
        elif isinstance(value, dict):
            lines.append(f"    {label}: {_fields(value)}")
        elif isinstance(value, list):
            lines.append(f"    {_field(_cut(key), value)}")
    return lines


def _fields(record: dict[str, Any]) -> str:
    return " ".join(_field(_cut(k), v) for k, v in record.items())


def _field(key: str, value: Any) -> str:
    """``key=value``: a time (epoch ms, an int64) as how long ago, a list comma-joined,
    a nested record as ``key.field=value`` pairs, nothing as ``-``. A key or value
    holding a space, ``=`` or ``"`` is quoted (JSON), so text a relay host chose
    (``last_error``) cannot pass for more fields; one over :data:`MAX_FIELD_CHARS`
    is cut (``…``), and so is each part of a nested ``key.field`` (a long key is
    not repeated whole before each of its fields)."""
    if isinstance(value, dict):
        return " ".join(_field(f"{_cut(key)}.{_cut(k)}", v) for k, v in value.items()) or f"{_quoted(key)}=-"
    if _is_time(key.rpartition(".")[2]) and (value is None or _is_int64(value)):
        return f"{_quoted(key.removesuffix('_ms'))}={relative(value)}"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = "-" if value is None or value == "" else _cut(str(value))
    return f"{_quoted(key)}={_quoted(text)}"


def _cut(text: str) -> str:
    return bounded_printable(text, MAX_FIELD_CHARS)


def _label(text: str) -> str:
    """A name from the reply (a key, a transport's name or state), cut and quoted."""
    return _quoted(_cut(text))


def _quoted(text: str) -> str:
    """``text``, as a JSON string if it holds a space, ``=`` or ``"``."""
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ' ="') else text


def _is_int64(value: Any) -> bool:
    """An int that fits the API's int64 (JSON's ints are unbounded; bools are ints too)."""
    return type(value) is int and -(2**63) <= value < 2**63


def _render_msg(m: dict) -> str:
    line = f"{m['message_id']}  {m['status']}"
    if m.get("path"):
        line += f" via {m['path']}"
    if m.get("error"):
        line += f"  ({m['error']})"
    return line


def _node(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("info", help="node id, public key, state dir and socket")
    sub.add_parser("status", help="friends, transports, inbox and outbox counts")


def _run_node(args: argparse.Namespace, ctx: Context) -> Any:
    if args.action == "info":
        return ctx.client().node_info()
    return ctx.client().node_status()


def _render_node(obj: dict) -> str:
    return _render_status(obj) if "transports" in obj else kv(obj)


def _invite(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create a signed, expiring invite token")
    c.add_argument("--ttl", type=duration_arg, default=0, help="lifetime, e.g. 30s, 15m, 24h, 7d")
    c.add_argument(
        "--uses", type=non_negative_int, default=None, help="uses allowed (0 = unlimited until expiry)"
    )
    c.add_argument(
        "--scope", action="append", default=[], help="scope to grant (repeatable; default message)"
    )
    c.add_argument("--relay", action="append", default=[], help="relay host URL to put in the invite")
    c.add_argument("--endpoint", action="append", default=[], help="HOST:PORT where this node can be dialled")
    c.add_argument("--alias", default="", help="the name this node suggests for itself")
    c.add_argument("--rate", type=positive_float, help="messages/s granted to the invitee")
    c.add_argument("--burst", type=non_negative_int, help="burst granted to the invitee")
    a = sub.add_parser("accept", help="accept an invite token: the inviter becomes a friend")
    a.add_argument("token")
    a.add_argument("--alias", default="", help="local name for the inviter")
    ls = sub.add_parser("list", help="invites this node issued")
    ls.add_argument("--all", action="store_true", help="include used, expired and revoked ones")
    r = sub.add_parser("revoke", help="revoke an issued invite")
    r.add_argument("token_id")


def _run_invite(args: argparse.Namespace, ctx: Context) -> Any:
    c = ctx.client()
    if args.action == "create":
        rate = None
        if args.rate is not None or args.burst is not None:
            if args.rate is None or args.burst is None:
                raise UsageError("give both --rate and --burst")
            rate = (args.rate, args.burst)
        return c.invite_create(
            ttl_ms=args.ttl,
            uses=args.uses,
            scopes=args.scope,
            relay_hosts=args.relay,
            endpoints=args.endpoint,
            alias=args.alias,
            rate_limit=rate,
        )
    if args.action == "accept":
        return c.invite_accept(args.token, args.alias or None)
    if args.action == "list":
        return c.invite_list(all=args.all)
    return c.invite_revoke(args.token_id)


def _render_invite(obj: Any) -> str:
    if isinstance(obj, list):
        return table(
            [
                [
                    i["token_id"],
                    local_and_relative(i["expires_at_ms"]),
                    "unlimited" if i["uses_left"] is None else str(i["uses_left"]),
                    ",".join(i["scopes"]),
                    "revoked" if i["revoked"] else "",
                ]
                for i in obj
            ],
            ["TOKEN ID", "EXPIRES", "USES LEFT", "SCOPES", ""],
        )
    if "token" in obj:
        uses = "unlimited uses" if obj["uses"] is None else f"{obj['uses']} use(s)"
        expires = local_and_relative(obj["expires_at_ms"])
        return (
            f"{obj['token']}\n\ntoken id {obj['token_id']}, expires {expires}, "
            f"{uses}, scopes {','.join(obj['scopes'])}\n"
            "Give the token to the other node: tmax-mesh invite accept TOKEN"
        )
    if "revoked" in obj:
        return f"revoked invite {obj['token_id']}"
    return "friend added:\n" + kv(obj)


def _friends(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="list friends")
    for action, text in (
        ("block", "reject this friend's messages"),
        ("unblock", "accept them again"),
        ("remove", "forget this friend"),
    ):
        sp = sub.add_parser(action, help=text)
        sp.add_argument("friend", help="node id or alias")


def _run_friends(args: argparse.Namespace, ctx: Context) -> Any:
    c = ctx.client()
    if args.action == "list":
        return c.friends_list()
    if args.action == "remove":
        return c.friend_remove(args.friend)
    return c.friend_block(args.friend, blocked=args.action == "block")


def _render_friends_cmd(obj: Any) -> str:
    if isinstance(obj, list):
        return _render_friends(obj)
    if "removed" in obj:
        return f"removed {obj['removed']}"
    return f"{obj['alias'] or obj['node_id']}: {'blocked' if obj['blocked'] else 'unblocked'}"


def _msg(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("send", help="send a message to a friend")
    s.add_argument("--to", required=True, help="node id or alias")
    s.add_argument("--wait", action="store_true", help="wait until delivered (exit 1 on failure/timeout)")
    s.add_argument("--timeout", type=positive_float, default=30.0, help="seconds to wait (default 30)")
    s.add_argument("--scope", default="", help="scope (default message)")
    s.add_argument("--content-type", default="", help="content type (default text/plain)")
    s.add_argument(
        "--ttl", type=duration_arg, default=0, help="give up after this long (default messages.ttl)"
    )
    s.add_argument("--reply-to", default="", help="message id this answers")
    s.add_argument("body", help="message text, or - to read stdin")
    st = sub.add_parser("status", help="delivery status of a sent message")
    st.add_argument("message_id")


def _run_msg(args: argparse.Namespace, ctx: Context) -> Any:
    c = ctx.client()
    if args.action == "status":
        return c.msg_status(args.message_id)
    sent = c.msg_send(
        args.to,
        read_body(args.body),
        scope=args.scope,
        content_type=args.content_type,
        ttl_ms=args.ttl,
        reply_to=args.reply_to,
    )
    if not args.wait:
        return sent
    if sys.stderr.isatty():
        result = wait_with_progress(c.msg_wait, sent, args.timeout, sys.stderr)
    else:
        result = c.msg_wait(sent["message_id"], args.timeout)
    if result["status"] != "delivered":
        ctx.args._exit_code = EXIT_ERROR
        if result["status"] != "failed":
            result["error"] = result["error"] or f"not delivered within {args.timeout:g}s"
    return result


def _msg_json(obj: dict) -> dict:
    return {k: obj[k] for k in ("message_id", "status", "path", "attempts", "error") if k in obj}


def _inbox(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="messages received")
    ls.add_argument("--unread", action="store_true")
    ls.add_argument("--limit", type=non_negative_int, default=0)
    a = sub.add_parser("ack", help="mark messages read")
    a.add_argument("message_ids", nargs="*")
    a.add_argument("--all", action="store_true")
    d = sub.add_parser("delete", help="delete messages, read or not (frees their quota)")
    d.add_argument("message_ids", nargs="*")
    d.add_argument("--acked", action="store_true", help="every message already acked")
    for cmd in (a, d):
        cmd.add_argument(
            "--from",
            dest="sender",
            default="",
            metavar="NODE",
            help="only the messages from this node id or friend alias (needed when two senders used one id)",
        )
    sub.add_parser("unread", help="count unread messages")
    w = sub.add_parser("watch", help="print messages as they arrive (one JSON object per line with --json)")
    w.add_argument("--unread", action="store_true", help="first print messages not yet acked")


def _run_inbox(args: argparse.Namespace, ctx: Context) -> Any:
    c = ctx.client()
    if args.action == "list":
        return c.inbox_list(unread=args.unread, limit=args.limit)
    if args.action == "ack":
        if args.all == bool(args.message_ids):
            raise UsageError("give message ids to ack, or --all (not both)")
        return c.inbox_ack(args.message_ids, all=args.all, sender=args.sender)
    if args.action == "delete":
        if args.acked == bool(args.message_ids):
            raise UsageError("give the ids of the messages to delete, or --acked (not both)")
        return c.inbox_delete(args.message_ids, acked=args.acked, sender=args.sender)
    if args.action == "unread":
        return c.inbox_unread()
    for message in c.inbox_watch(include_existing_unread=args.unread):
        print(strict_json(message) if args.json else _render_message(printable_tree(message)), flush=True)
    return None


def _render_inbox_cmd(obj: Any) -> str:
    if isinstance(obj, list):
        return _render_inbox(obj)
    if "acked" in obj:
        return f"acked {obj['acked']}"
    if "deleted" in obj:
        return f"deleted {obj['deleted']}"
    return f"{obj['unread']} unread"


def _status(p: argparse.ArgumentParser) -> None:
    return None


def _run_status(args: argparse.Namespace, ctx: Context) -> Any:
    return ctx.client().friends_status()


def short_id(node_id: str) -> str:
    """``0x1234…abcd``: enough of a node id to tell friends apart on screen."""
    return f"{node_id[:6]}…{node_id[-4:]}" if len(node_id) > 12 else node_id


def _render_friends_status(obj: dict) -> str:
    if not obj["friends"]:
        return "no friends yet: tmax-mesh invite create, then give the token to the other node"
    return table(
        [
            [
                (f["alias"] or "-") + (" (blocked)" if f["blocked"] else ""),
                short_id(f["node_id"]),
                f["path"],
                relative(f["last_seen_ms"]),
                str(f["queued"] + f["sent"]),
                str(f["failed"]),
            ]
            for f in obj["friends"]
        ],
        ["FRIEND", "NODE ID", "PATH", "LAST SEEN", "QUEUED", "FAILED"],
    )


def _completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.epilog = (
        "bash: tmax-mesh completion bash > ~/.local/share/bash-completion/completions/tmax-mesh; "
        "zsh: tmax-mesh completion zsh > ~/.zfunc/_tmax-mesh (with ~/.zfunc on $fpath); "
        "fish: tmax-mesh completion fish > ~/.config/fish/completions/tmax-mesh.fish"
    )


def _run_completion(args: argparse.Namespace, ctx: Context) -> Any:
    assert ctx.parser is not None  # main() always passes it
    sys.stdout.write(completion_script(ctx.parser, args.shell))
    return None


def _plugins(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")  # none: list them
    sub.add_parser("list", help="installed plugins and their hooks (the default)")
    for action, text in (
        ("install", "install plugins with pip into the environment tmax-mesh runs in"),
        ("uninstall", "uninstall plugins with pip"),
    ):
        sp = sub.add_parser(action, help=text)
        sp.add_argument(
            "names",
            nargs="+",
            metavar="NAME",
            help="relay, direct, session_mailbox, ratelimit, or anything pip takes (a name, a wheel, a path)",
        )
        if action == "install":
            sp.add_argument("-U", "--upgrade", action="store_true", help="upgrade if already installed")
            sp.add_argument("-e", "--editable", action="store_true", help="install local paths editable")


def _run_plugins(args: argparse.Namespace, ctx: Context) -> Any:
    """``install``/``uninstall`` through pip; else the loaded plugins
    (``"error": null``), then the ones that failed to load with their
    one-line error (``"hooks": []``)."""
    if args.action in ("install", "uninstall"):
        install = args.action == "install"
        argv = pip_argv(
            args.action,
            args.names,
            upgrade=install and args.upgrade,
            editable=install and args.editable,
        )
        run_pip(argv)
        return {args.action + "ed": [requirement(n) for n in args.names]}
    failed = failed_plugins(ctx.pm)
    for failure in failed:
        print(f"warning: plugin {failure['name']} failed to load: {failure['error']}", file=sys.stderr)
    loaded = [{**p, "error": None} for p in list_plugins(ctx.pm)]
    return loaded + [{"version": None, "hooks": [], **f} for f in failed]


def _render_plugins(obj: Any) -> str:
    if isinstance(obj, dict):
        ((action, names),) = obj.items()
        return f"{action} {', '.join(names)} (a running tmax-node loads plugins when it starts)"
    plugins = obj
    return table(
        [
            [p["name"], p["version"] or "-", f"FAILED: {p['error']}" if p["error"] else ", ".join(p["hooks"])]
            for p in plugins
        ],
        ["NAME", "VERSION", "HOOKS"],
    )


def register_builtin_commands(cli: CommandRegistry) -> None:
    from tmax_core.config_cli import configure_config, render_config, run_config

    cli.add("node", "node identity and status", _node, _run_node, _render_node)
    cli.add("invite", "create, accept, list and revoke invites", _invite, _run_invite, _render_invite)
    cli.add("friends", "list, block, unblock and remove friends", _friends, _run_friends, _render_friends_cmd)
    cli.add("msg", "send messages and check their delivery", _msg, _run_msg, _render_msg)
    cli.add("inbox", "read, ack, delete and watch received messages", _inbox, _run_inbox, _render_inbox_cmd)
    cli.add(
        "status",
        "each friend: how messages go now (direct, relay, offline), last seen, queued and failed",
        _status,
        _run_status,
        _render_friends_status,
    )
    cli.add("completion", "print a shell completion script (bash, zsh, fish)", _completion, _run_completion)
    cli.add("config", "show and edit config.toml", configure_config, run_config, render_config)
    cli.add(
        "plugins", "installed plugins and the hooks they implement", _plugins, _run_plugins, _render_plugins
    )


def build_parser(cli: CommandRegistry) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=argparse.SUPPRESS, help="state folder of the node")
    common.add_argument("--socket", default=argparse.SUPPRESS, help="local API socket")
    common.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser = argparse.ArgumentParser(
        prog="tmax-mesh",
        parents=[common],
        description="Talk to a tmax-mesh node: invites, friends, messages.",
    )
    parser.add_argument("--version", action="version", version=f"tmax-mesh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in cli.commands.values():
        sp = sub.add_parser(command.name, help=command.help, parents=[common], description=command.help)
        command.configure(sp)
        _share_common(sp, common)
    return parser


def _share_common(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """Let the global flags appear after sub-sub-commands too (``inbox list --json``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any(a.dest == "json" for a in child._actions):
                    for a in common._actions:
                        child._add_action(a)
                _share_common(child, common)


def _output(command: Any, args: argparse.Namespace, result: Any) -> str:
    """What a command prints: strict JSON with ``--json``, else its renderer's text
    (escaped before rendering: a renderer's own line breaks stay), else JSON."""
    if args.json:
        if command.name == "msg" and args.action == "send" and isinstance(result, dict):
            result = _msg_json(result)
        return strict_json(result)
    if command.render:
        return command.render(printable_tree(result))
    return strict_json(result, indent=2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        pm = create_plugin_manager()
        cli = CommandRegistry()
        register_builtin_commands(cli)
        pm.hook.tmax_register_commands(cli=cli)
        parser = build_parser(cli)
        args = parser.parse_args(argv)
        for name, default in (
            ("state_dir", None),
            ("socket", None),
            ("config", None),
            ("json", False),
            ("debug", False),
        ):
            if not hasattr(args, name):
                setattr(args, name, default)
        args._exit_code = 0
        command = cli.commands[args.command]
        ctx = Context(args=args, pm=pm, parser=parser)
        result = command.run(args, ctx)
        if result is not None:
            print(_output(command, args, result))
        return args._exit_code
    except MeshError as err:
        if debug:
            raise
        print(f"tmax-mesh: error: {printable(str(err))}", file=sys.stderr)
        return EXIT_USAGE if err.code == "usage" else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
