"""Logging set-up shared by the daemons: readable text, or one JSON object per line.

Extra fields passed with ``extra={"node_id": ..., "connection_id": ...}`` are
kept in JSON output, so logs can be filtered by node or connection.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created * 1e6) % 1_000_000:06d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class GrpcClientGone(logging.Filter):
    """gRPC's asyncio server logs ``ExecuteBatchError raised in core by
    servicer method [...]`` at ERROR, with a traceback of its own internals,
    when it cannot send a call's final status because the client has already
    gone (a reset stream, a killed node: ordinary on a network). Kept as one
    INFO line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("ExecuteBatchError raised in core by servicer method"):
            record.msg, record.args = (
                "%s (the client went away before the call ended)",
                (record.getMessage(),),
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, GrpcClientGone) for f in grpc_core.filters):
        grpc_core.addFilter(GrpcClientGone())


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _one_of(choices: tuple[str, ...], env_var: str) -> Callable[[str], str]:
    """An argparse ``type`` that checks the value, including a default taken
    from the environment (argparse converts string defaults with ``type`` but
    never checks them against ``choices``)."""

    def convert(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of {', '.join(choices)} (from the flag or {env_var})"
            )
        return value

    return convert


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format`` (defaults from TMAX_LOG_LEVEL / TMAX_LOG_FORMAT)."""
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TMAX_LOG_LEVEL", "info"),
        type=_one_of(LOG_LEVELS, "TMAX_LOG_LEVEL"),
        metavar="{" + ",".join(LOG_LEVELS) + "}",
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("TMAX_LOG_FORMAT", "text"),
        type=_one_of(LOG_FORMATS, "TMAX_LOG_FORMAT"),
        metavar="{" + ",".join(LOG_FORMATS) + "}",
    )
