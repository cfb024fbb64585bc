"""Logging flags: values from the environment are checked like flags."""

from __future__ import annotations

import argparse

import pytest

from tmax_core.logs import add_logging_arguments


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
