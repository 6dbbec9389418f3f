"""Logging: one line per event, through named loggers under `digest`; JSON when stderr is not a terminal.

Every line carries the logger's name and the run id. Library modules log through an ``EventLog`` of their own
(`digest.ingest`, `digest.mail.send.delivery`, `digest.mail.send.transport`, ...); nothing is printed until a command
configures the handler (the worker always does), so CLI output stays the CLI's.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The run a log line belongs to: a job run's id, or the worker's own id between jobs.
run_id: ContextVar[str] = ContextVar("run_id", default="-")

log = logging.getLogger("digest")
log.addHandler(logging.NullHandler())

# The paths whose next segment is a signed link's token (digest.web's routes): a log line never carries one, even
# from a traceback or a library's own message. What a token is for stays readable; the token does not.
_TOKEN_PATH = re.compile(r"(/(?:confirm|manage|unsubscribe|digests|feeds/me)/)[^/\s?#\"'<>]+")


def redact(text: str) -> str:
    """``text`` with the token of every signed link's path replaced by ``<token>``."""
    return _TOKEN_PATH.sub(r"\1<token>", text)


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
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level event key=value ...` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname.lower():7} [{run_id.get()}] {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure(json_lines: bool | None = None, level: int = logging.INFO) -> None:
    """Send digest's log to stderr: JSON lines unless stderr is a terminal (or as asked). Every other library's
    warnings, and any exception no thread caught, go the same way: one event a line, never a bare traceback."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # APScheduler's own lines would repeat ours ("Running job ...") in another format; its warnings and waitress's
    # go through the same handler, in the same format, redacted the same way.
    for name in ("apscheduler", "waitress"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    threading.excepthook = _thread_crashed


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread else "?"
    fields = {"thread": thread, "error": f"{args.exc_type.__name__}: {args.exc_value}"}
    log.error("thread.crashed", extra={"fields": fields, "run_id": run_id.get()}, exc_info=args.exc_value)


def event(name: str, level: int = logging.INFO, exc_info: Any = False, **fields: Any) -> None:
    """Log one event with its fields on the `digest` logger."""
    log.log(level, name, extra={"fields": fields, "run_id": run_id.get()}, exc_info=exc_info)


class EventLog:
    """A module's named logger (a child of `digest`) that logs events with fields: ``events("x.y", key=v)``."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __call__(self, name: str, level: int = logging.INFO, exc_info: Any = False, **fields: Any) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, name, extra={"fields": fields, "run_id": run_id.get()}, exc_info=exc_info)
