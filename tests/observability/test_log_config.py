"""`prismgate serve`'s logging: what --log-level, LiteLLM's --debug / --detailed_debug and
--log-format set (the mapping uvicorn applies in each worker)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from prismgate.observability.log_config import JsonFormatter, serve_logging


def levels(**options: object) -> tuple[int, int, int, int, str]:
    config, uvicorn_level = serve_logging(**options)  # type: ignore[arg-type]
    loggers = config["loggers"]
    return (
        loggers["prismgate"]["level"],
        loggers["prismgate.access"]["level"],
        loggers["uvicorn"]["level"],
        config["root"]["level"],
        uvicorn_level,
    )


def test_info_by_default_logs_requests_and_keeps_uvicorn_quiet() -> None:
    assert levels(level="info") == (
        logging.INFO,
        logging.INFO,
        logging.WARNING,
        "WARNING",
        "warning",
    )


def test_warning_silences_the_access_log() -> None:
    assert levels(level="WARNING")[:2] == (logging.WARNING, logging.WARNING)


@pytest.mark.parametrize("level", ["info", "warning", "error"])
def test_litellm_debug_is_log_level_debug_libraries_aside(level: str) -> None:
    assert levels(level=level, debug=True) == (
        logging.DEBUG,
        logging.DEBUG,
        logging.DEBUG,
        "WARNING",
        "debug",
    )


def test_litellm_detailed_debug_reaches_the_libraries_but_not_sql_parameters() -> None:
    config, _ = serve_logging("info", detailed_debug=True)
    assert config["root"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn"]["level"] == logging.DEBUG
    assert config["loggers"]["sqlalchemy"]["level"] == "WARNING"  # statements carry key hashes


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="one of critical, error, warning, info, debug, trace"):
        serve_logging("loud")


def test_json_lines_are_one_object_each_with_the_traceback_inside() -> None:
    config, _ = serve_logging("info", json=True)
    assert config["handlers"]["access"]["json"] is True
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord(
            "prismgate.proxy", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "ERROR",
        "prismgate.proxy",
        "failed: x",
    )
    assert "RuntimeError: boom" in parsed["exception"]
    assert parsed["ts"].endswith("Z")
