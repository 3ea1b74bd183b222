"""Structured logs: structlog, one JSON line per fact, key/value, never PII.

Log calls name facts with ids of *things* (positions, counts, reasons, key labels), never
customer identifiers or payloads. Configured once at start-up from settings.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "quiet_payload_loggers"]

# Libraries that log message keys and values at DEBUG (aiokafka: "Sending (key=... value=...)"):
# whole touchpoints and views, i.e. personal data. They never log below INFO, whatever
# level Touchstream's own logs run at.
PAYLOAD_LOGGERS = ("aiokafka", "kafka", "faust.transport", "redis")


def quiet_payload_loggers() -> None:
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET or DEBUG; a stricter level stays
            logger.setLevel(logging.INFO)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    quiet_payload_loggers()
