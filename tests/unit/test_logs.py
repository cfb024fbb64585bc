"""Logging flags: values from the environment are checked like flags."""

from __future__ import annotations

import argparse
import io
import logging

import pytest

from tmax_core.logs import add_logging_arguments, setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tmax-test")
    add_logging_arguments(parser)
    return parser


def test_a_bad_log_level_in_the_environment_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMAX_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'verbose' is not one of debug, info, warning, error" in err
    assert "TMAX_LOG_LEVEL" in err


def test_log_level_and_format_from_the_environment_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMAX_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("TMAX_LOG_FORMAT", "json")
    args = _parser().parse_args([])
    assert (args.log_level, args.log_format) == ("debug", "json")


def test_a_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMAX_LOG_LEVEL", "verbose")  # not even read: the flag wins
    args = _parser().parse_args(["--log-level", "warning", "--log-format", "text"])
    assert (args.log_level, args.log_format) == ("warning", "text")


def test_a_bad_log_format_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--log-format", "xml"])
    assert "'xml' is not one of text, json" in capsys.readouterr().err


def _log_a_client_gone_and_another_error() -> None:
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    try:
        raise RuntimeError('Failed "execute_batch": (SendStatusFromServerOperation,)')
    except RuntimeError:
        grpc_core.error(
            "ExecuteBatchError raised in core by servicer method [%s]",
            "/tmax_mesh.host.v1.HostService/Connect",
            exc_info=True,
        )
    grpc_core.error("Unexpected [ValueError] raised by servicer method [/x]")


def test_grpcs_client_gone_error_is_one_info_line_without_a_traceback() -> None:
    """What gRPC's asyncio server logs when a client vanished before its call's
    final status could be sent (seen in a fuzz run against the host)."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    setup_logging("info", "text")
    out = io.StringIO()
    root.handlers[0].setStream(out)  # type: ignore[attr-defined]
    try:
        _log_a_client_gone_and_another_error()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = out.getvalue().splitlines()
    assert "Traceback" not in out.getvalue()
    assert " INFO grpc._cython.cygrpc: ExecuteBatchError raised in core by servicer method " in lines[0]
    assert lines[0].endswith(
        "[/tmax_mesh.host.v1.HostService/Connect] (the client went away before the call ended)"
    )
    assert " ERROR grpc._cython.cygrpc: Unexpected [ValueError]" in lines[1]  # other gRPC errors stay
