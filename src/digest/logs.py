"""Logging: one line per event, through named loggers under `digest`; JSON when stderr is not a terminal.

Every line carries the logger's name and the run id. Library modules log through an ``EventLog`` of their own
(`digest.ingest`, `digest.mail.delivery`, `digest.mail.transport`, ...); nothing is printed until a command
configures the handler (the worker always does), so CLI output stays the CLI's.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The run a log line belongs to: a job run's id, or the worker's own id between jobs.
run_id: ContextVar[str] = ContextVar("run_id", default="-")

log = logging.getLogger("digest")
log.addHandler(logging.NullHandler())


class JsonFormatter(logging.Formatter):
    """{"ts": ..., "level": ..., "event": ..., "run_id": ..., **fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", run_id.get()),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level event key=value ...` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname.lower():7} [{run_id.get()}] {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(json_lines: bool | None = None, level: int = logging.INFO) -> None:
    """Send digest's log to stderr: JSON lines unless stderr is a terminal (or as asked)."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # APScheduler's own lines would repeat ours ("Running job ...") in another format.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").handlers[:] = [handler]


def event(name: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
    """Log one event with its fields on the `digest` logger."""
    log.log(level, name, extra={"fields": fields, "run_id": run_id.get()}, exc_info=exc_info)


class EventLog:
    """A module's named logger (a child of `digest`) that logs events with fields: ``events("x.y", key=v)``."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __call__(self, name: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, name, extra={"fields": fields, "run_id": run_id.get()}, exc_info=exc_info)
