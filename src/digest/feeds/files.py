"""The feeds written to feeds_dir: every document the web app serves under /feeds/, byte for byte, each written
only when its bytes changed (atomically), so a static web server can serve the folder with its own validators."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from digest import logs
from digest.config import Settings
from digest.feeds.documents import all_documents, render_document
from digest.feeds.jsonfeed import json_path

events = logs.EventLog("digest.feeds")


@dataclass(frozen=True)
class FeedResult:
    path: str
    entries: int
    changed: bool
    # Why this feed was not written (the others were); None when it was.
    error: str | None = None


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically (temp file, fsync, rename) unless the file already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def build_feeds(session: Session, settings: Settings) -> list[FeedResult]:
    """Write every theme's feed, the feed of all practices and their archives into feeds_dir; report what changed
    or failed. One document that cannot be built stops no other."""
    out_dir = Path(settings.feeds_dir)
    results = []
    for document in all_documents(session, settings):
        # The Atom document and its JSON Feed beside it (the same entries): what /feeds/ serves, byte for byte.
        for path, as_json in ((out_dir / document.path, False), (out_dir / json_path(document.path), True)):
            try:
                rendered = render_document(session, settings, document, as_json)
                results.append(FeedResult(str(path), rendered.entries, write_if_changed(path, rendered.data)))
            except Exception as e:  # one feed that cannot be built stops no other
                events("feed.failed", logging.ERROR, exc_info=True, path=str(path))
                results.append(FeedResult(str(path), 0, False, f"{path}: not written: {type(e).__name__}: {e}"))
    return results
