"""Structured logs: structlog, one JSON line per fact, key/value, never PII.

Log calls name facts with ids of *things* (positions, counts, reasons, key labels), never
customer identifiers or payloads. Configured once at start-up from settings.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "quiet_payload_loggers", "stdlib_formatter", "stdlib_config"]

# Libraries that log message keys and values at DEBUG (aiokafka: "Sending (key=... value=...)"):
# whole touchpoints and views, i.e. personal data. They never log below INFO, whatever
# level Touchstream's own logs run at.
PAYLOAD_LOGGERS = ("aiokafka", "kafka", "faust.transport", "redis")


def quiet_payload_loggers() -> None:
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET or DEBUG; a stricter level stays
            logger.setLevel(logging.INFO)


def _renderer(fmt: str) -> Any:
    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()


def stdlib_formatter(fmt: str = "json") -> logging.Formatter:
    """The standard library's records (uvicorn, asyncio, faust, aiokafka) rendered as
    Touchstream's own: one JSON line each, level, logger and time added, a traceback as
    one ``exception`` field rather than lines of text."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _renderer(fmt)],
    )


def stdlib_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """``logging.config.dictConfig`` for the standard library's root logger: every record
    to standard error through ``stdlib_formatter`` (what faust's worker is given, so it
    does not install its own coloured text handler)."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"touchstream": {"()": "services.logging.stdlib_formatter", "fmt": fmt}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "touchstream",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(stdlib_config(level, fmt))
    logging.captureWarnings(True)  # warnings too: one JSON line each, not text
    quiet_payload_loggers()
