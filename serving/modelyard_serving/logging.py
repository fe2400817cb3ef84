"""Structured JSON logs: one object per line on stderr, the format log collectors parse as-is."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

ACCESS_LOGGER = "modelyard_serving.access"

# LogRecord attributes that are plumbing, not payload; anything else passed via `extra=` is
# copied into the JSON object.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _timestamp(created: float) -> str:
    millis = int((created % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "color_message":  # uvicorn's ANSI copy
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    """Route our loggers and uvicorn's through the JSON formatter (called by __main__ only)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Our middleware writes the access log; uvicorn's own would duplicate it as plain text.
    logging.getLogger("uvicorn.access").disabled = True


class AccessLog:
    """Writes the per-request access line straight to stderr, in the JsonFormatter shape.

    Going through ``logging`` (LogRecord, handler lock, formatter) costs ~10x more than
    encoding one dict with orjson, and this runs on every request: the line is one dict literal
    encoded once. One ``os.write`` per line keeps lines whole and unbuffered, like the logging
    handler would.
    """

    def __init__(self, write: Callable[[bytes], object] | None = None) -> None:
        self._write = write or (lambda line: os.write(2, line))
        self._second = -1
        self._second_text = ""

    def __call__(self, method: str, path: str, route: str, status: int, seconds: float, client: str | None) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once per second, not per request
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        entry = {
            "ts": f"{self._second_text}.{int((now - second) * 1000):03d}Z",
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": "request",
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "durationMs": round(seconds * 1e6) / 1000,  # whole microseconds; round(x, 3) is slower
            "client": client,
        }
        self._write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
