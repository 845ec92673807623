"""Structured logs: one JSON object per line in production, readable lines on a terminal.

Built on the standard ``logging`` module. Call sites log an event name plus fields::

    log.info("block_committed", extra=fields(height=12, txs=40))

and every line also carries the node's current height and view from a context provider, so
an operator can correlate lines across validators without parsing messages.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

FIELDS_ATTR = "perpbft_fields"
LOGGER_NAME = "perpbft"

ContextProvider = Callable[[], dict[str, Any]]


def fields(**kw: Any) -> dict[str, Any]:
    """The ``extra=`` argument for a structured log call."""
    return {FIELDS_ATTR: kw}


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    value = getattr(record, FIELDS_ATTR, None)
    return value if isinstance(value, dict) else {}


class JsonFormatter(logging.Formatter):
    def __init__(self, context: ContextProvider) -> None:
        super().__init__()
        self._context = context

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        body.update(self._context())
        body.update(_record_fields(record))
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self, context: ContextProvider) -> None:
        super().__init__()
        self._context = context

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        ms = int(record.msecs)
        parts = [f"{stamp}.{ms:03d}", f"{record.levelname:<7}", record.getMessage()]
        merged = {**self._context(), **_record_fields(record)}
        parts.extend(f"{k}={v}" for k, v in merged.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    context: ContextProvider | None = None,
) -> logging.Logger:
    """Set up the ``perpbft`` logger. ``fmt`` is json, text, or auto (text on a terminal)."""
    out = stream if stream is not None else sys.stderr
    provider: ContextProvider = context or dict
    if fmt == "auto":
        fmt = "text" if out.isatty() else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be json, text or auto, not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(provider) if fmt == "json" else TextFormatter(provider))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(numeric)
    logger.propagate = False
    return logger


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
