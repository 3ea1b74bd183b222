"""Every log line a process writes is one JSON object, the libraries' lines included:
faust, aiokafka, uvicorn and asyncio log through the standard library, and a traceback
is one field of its line, never lines of text between JSON lines."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

from services.logging import configure_logging


@pytest.fixture
def json_logging() -> Iterator[None]:
    """The test configures logging itself (its handlers bind the stream captured then);
    this puts back what the test run had."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = handlers, level
        structlog.configure(**config)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_a_library_s_error_with_its_traceback_is_one_json_line(json_logging: None,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    try:
        {}["missing"]  # noqa: B018 - raise a real exception with a real traceback
    except KeyError:
        logging.getLogger("asyncio").error("Future exception was never retrieved", exc_info=True)
    logging.getLogger("faust.timer").warning("Timer %s woke up too late, with a drift of %r", "commit", 0.5)
    structlog.get_logger("touchstream.test").info("own_fact", count=3)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    err = capfd.readouterr().err
    records = lines(err)  # every line parses
    assert len(records) == len(err.strip().splitlines()) == 4
    failure, drift, own, warned = records
    assert failure["level"] == "error" and failure["logger"] == "asyncio"
    assert "Traceback" in str(failure["exception"]) and "KeyError" in str(failure["exception"])
    assert drift == {**drift, "level": "warning", "logger": "faust.timer",
                     "event": "Timer commit woke up too late, with a drift of 0.5"}
    assert own["event"] == "own_fact" and own["count"] == 3 and "timestamp" in own
    assert warned["logger"] == "py.warnings" and "deprecation" in str(warned["event"])
