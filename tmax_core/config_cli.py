"""``tmax-mesh config path|show|get|set|unset``: works on the file directly
(no running node needed). Changes take effect when the node restarts."""

from __future__ import annotations

import argparse
from typing import Any

from tmax_core.config import Config, build_registry, config_path, set_value, unset_value


def configure_config(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("path", help="where the config file is")
    sub.add_parser("show", help="every key: value, source, type, help")
    g = sub.add_parser("get", help="one key's effective value")
    g.add_argument("key")
    s = sub.add_parser("set", help="set a key in the config file (validated first)")
    s.add_argument("key")
    s.add_argument("value")
    u = sub.add_parser("unset", help="remove a key from the config file")
    u.add_argument("key")


def run_config(args: argparse.Namespace, ctx: Any) -> Any:
    path = config_path(ctx.state_dir, args.config)
    registry = build_registry(ctx.pm)
    if args.action == "path":
        return {"path": str(path), "exists": path.exists()}
    if args.action == "set":
        value = set_value(path, registry, args.key, args.value)
        return {"key": args.key, "value": value, "path": str(path)}
    if args.action == "unset":
        removed = unset_value(path, registry, args.key)
        return {"key": args.key, "removed": removed, "path": str(path)}
    config = Config.load(path, registry)
    if args.action == "get":
        return {"key": args.key, "value": config.get(args.key), "source": config.source(args.key)}
    return config.describe()


def render_config(obj: Any) -> str:
    if isinstance(obj, list):
        width = max(len(k["key"]) for k in obj)
        return "\n".join(
            f"{k['key'].ljust(width)}  {_show(k['value'])}  ({k['source']})  # {k['help']}" for k in obj
        )
    if "exists" in obj:
        return obj["path"] + ("" if obj["exists"] else "  (not created yet)")
    if "removed" in obj:
        return f"unset {obj['key']}" if obj["removed"] else f"{obj['key']} was not set in {obj['path']}"
    if "source" in obj:
        return _show(obj["value"])
    return f"{obj['key']} = {_show(obj['value'])}  (in {obj['path']}; restart the node to apply)"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(repr(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)
