"""Ingest: read a source (file or URL), parse it by kind, and store one practice per identity with its themes.

Each source stands alone: its own fetch, its own transaction. A failing source is reported, stores nothing,
and stops no other source; what was stored before stays.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from digest import logs, metrics
from digest.config import SOURCE_FORMATS, Settings, SourceConfig
from digest.errors import DigestError, SourceError
from digest.ingest.encoding import as_utf8_xml, bom, decode, xml_encoding
from digest.ingest.export import parse_csv, parse_json
from digest.ingest.feed import parse_feed
from digest.ingest.fetch import FetchStopped, HttpPolicy, SourceGone, fetch
from digest.ingest.items import ParsedSource, Problem
from digest.ingest.listing import looks_like_listing, parse_listing
from digest.ingest.merge import IngestReport, identity_of, store_parsed
from digest.store.db import MEMBERSHIP_LOCK
from digest.store.models import SourceState
from digest.store.states import SourceStatus
from digest.text.clean import repair_mojibake
from digest.text.languages import first_tag, language_tag
from digest.text.links import MAX_URL, redact_url, secret_of

__all__ = ["FORMATS", "HttpPolicy", "IngestReport", "detect_format", "identity_of", "ingest_sources", "parse_bytes"]

FORMATS = SOURCE_FORMATS
events = logs.EventLog(__name__)

# Shows progress while items are stored: called with the source and the item count, gives `advance(n)`.
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]

_XML_ROOT = re.compile(r"<\s*(rss|rdf:rdf|feed|html|!doctype\s+html)\b")


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _xml_like(data: bytes) -> bool:
    """Bytes that XML's rules should decode: a BOM or UTF-16/32 signature, or `<` first."""
    return bom(data) is not None or xml_encoding(data) is not None or data.lstrip()[:1] == b"<"


def detect_kind(text: str, source: str) -> str:
    """The kind of a decoded source: a feed's root element, JSON, a CSV header, a listing."""
    head = text[:8192].lstrip("\ufeff \t\r\n")
    root = _XML_ROOT.search(head.lower()) if head.startswith("<") else None
    kind = root.group(1) if root else ""
    if kind in ("rss", "rdf:rdf"):
        return "rss"
    if kind == "feed":
        return "atom"
    if head.startswith(("[", "{")):
        return "json"
    first_line = head.split("\n", 1)[0]
    if "title" in (f.strip().strip('"').strip().lower() for f in re.split(r"[,;\t]", first_line)):
        return "csv"
    # Before the markup checks: a listing's first title may itself look like a tag.
    if looks_like_listing(text):
        return "listing"
    if kind:
        raise SourceError(
            f"{source}: an HTML page, not a feed", "use the page's feed (its 'Subscribe to' link) instead"
        )
    if head.startswith("<"):
        raise SourceError(f"{source}: XML, but neither RSS nor Atom", "give --format if it is a feed")
    raise SourceError(f"{source}: cannot tell what kind of source this is", f"give --format ({', '.join(FORMATS)})")


def detect_format(data: bytes, source: str) -> str:
    """The kind of a source from its bytes (decoded by the encoding rules first)."""
    return detect_kind(decode(data, source, xml=_xml_like(data)).text, source)


def parse_bytes(
    data: bytes, source: str, fmt: str | None = None, content_type: str | None = None, base: str | None = None
) -> ParsedSource:
    """Decode (see digest.ingest.encoding), then parse a source of the given kind, or of the kind it looks like.

    ``content_type`` is the HTTP header (its charset counts); ``base`` is the URL it came from.
    """
    if fmt not in (None, *FORMATS):
        raise SourceError(f"{source}: unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    decoded = decode(data, source, content_type, xml=fmt in ("rss", "atom") or (fmt is None and _xml_like(data)))
    kind = fmt or detect_kind(decoded.text, source)
    # Mojibake is repaired only in text that came as Unicode and shows it; a legacy encoding was read as itself.
    repair = decoded.unicode and repair_mojibake(decoded.text) != decoded.text
    if kind in ("rss", "atom"):
        parsed = parse_feed(as_utf8_xml(decoded), source, base, repair)
    elif kind == "json":
        parsed = parse_json(decoded.text, source, repair)
    elif kind == "csv":
        parsed = parse_csv(decoded.text, source, repair)
    else:
        parsed = parse_listing(decoded.text, source, repair)
    if decoded.how.startswith("detected") or "did not fit" in decoded.how:
        parsed.problems.insert(0, Problem("file", "", f"read as {decoded.encoding} ({decoded.how})"))
    return parsed


def _languages(parsed: ParsedSource, header: str | None, configured: str | None) -> None:
    """Each item's language: its own, else the source's (<language>, dc:language, xml:lang), else the HTTP
    Content-Language, else the source's config entry; else unknown (never guessed)."""
    fallback = parsed.language or header or configured
    if fallback:
        for item in parsed.items:
            item.language = item.language or fallback


def read_file(location: str) -> bytes:
    try:
        return Path(location).read_bytes()
    except OSError as e:
        raise SourceError(f"{location}: cannot read: {e.strerror}", "check the path") from e


def read_source(location: str, fmt: str | None = None) -> ParsedSource:
    """Read and parse a source file (no state, no HTTP): for tests and tools."""
    return parse_bytes(read_file(location), location, fmt)


def policy_from(settings: Settings) -> HttpPolicy:
    """The HTTP client's limits, from settings."""
    return HttpPolicy(
        timeout=settings.http_timeout,
        retries=settings.http_retries,
        backoff=settings.http_backoff,
        max_bytes=settings.http_max_bytes,
        max_redirects=settings.http_max_redirects,
        contact=settings.base_url,
        deadline=settings.http_deadline,
    )


@contextmanager
def _no_progress(source: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def _state(session: Session, location: str, now: datetime) -> SourceState:
    state = session.scalar(select(SourceState).where(SourceState.location == location))
    if state is None:
        state = SourceState(
            location=location, status=SourceStatus.NEW, last_fetch_at=now, failures=0, items=0, rejected=0
        )
        session.add(state)
    return state


def _record_failure(factory: sessionmaker[Session], location: str, error: str, gone: bool, now: datetime) -> None:
    """Note a failed fetch or parse in its own transaction; validators stay, so nothing is skipped later."""
    try:
        with factory() as session, session.begin():
            state = _state(session, location, now)
            state.status = SourceStatus.GONE if gone else SourceStatus.FAILED
            state.last_fetch_at, state.last_error = now, error
            state.failures = (state.failures or 0) + 1
    except Exception:  # the store itself is failing: the report and the log still say what happened
        events("source.state_not_recorded", logging.ERROR, exc_info=True, source=redact_url(location))


def _scrubbed(text: str, location: str) -> str:
    """A message with the source's credentials removed, wherever a library may have quoted them."""
    text = text.replace(location, redact_url(location))
    secret = secret_of(location)
    return text.replace(secret, "***") if secret else text


def ingest_one(
    factory: sessionmaker[Session],
    source: SourceConfig,
    now: datetime,
    policy: HttpPolicy,
    skip_gone: bool = False,
    progress: Progress = _no_progress,
    stop: threading.Event | None = None,
) -> IngestReport:
    """Fetch or read one source, parse it, and store it with its fetch state in one transaction.

    Whatever goes wrong is this source's failure: recorded in its state, named in the report with a hint,
    logged; nothing of it is stored and what was stored before stays. Credentials in its URL are never shown.
    """
    location = source.location
    name = redact_url(location)
    if len(location) > MAX_URL:
        return IngestReport(
            source=name[:200] + "…",
            error=f"{name[:200]}…: the location is over {MAX_URL} characters",
            hint="shorten the URL or path",
        )
    with factory() as session:
        state = session.scalar(select(SourceState).where(SourceState.location == location))
        etag, last_modified = (state.etag, state.last_modified) if state else (None, None)
        if skip_gone and state is not None and state.status == SourceStatus.GONE:
            return IngestReport(
                source=name,
                error=f"{name}: gone (HTTP 410 on {state.last_fetch_at:%Y-%m-%d}); not fetched",
                hint="remove it from [[sources]] or set enabled = false; `digest ingest URL` tries it anyway",
                gone=True,
            )
    try:
        if is_url(location):
            fetched = fetch(location, policy, etag, last_modified, name=name, stop=stop)
            if fetched.not_modified:
                with factory() as session, session.begin():
                    state = _state(session, location, now)
                    state.status, state.last_fetch_at, state.last_ok_at = SourceStatus.NOT_MODIFIED, now, now
                    state.failures, state.last_error = 0, None
                return IngestReport(source=name, not_modified=True)
            data, content_type, base = fetched.body, fetched.content_type, fetched.url
        else:
            data, fetched, content_type, base = read_file(location), None, None, None
        parsed = parse_bytes(data, name, source.format, content_type, base)
        _languages(parsed, first_tag(fetched.content_language if fetched else None), language_tag(source.language))
        with factory() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                # Planning reads the newest membership id under the exclusive form of this lock, so it never
                # moves a cursor past a membership that this (not yet committed) transaction holds.
                session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": MEMBERSHIP_LOCK})
            with progress(name, len(parsed.items)) as advance:
                report = store_parsed(session, parsed, name, now, source.theme, advance)
            state = _state(session, location, now)
            state.status = SourceStatus.PARTIAL if report.rejected else SourceStatus.OK
            state.last_fetch_at, state.last_ok_at, state.failures = now, now, 0
            state.items, state.rejected = len(parsed.items), len(report.rejected)
            state.last_error = (
                f"{len(report.rejected)} item(s) left out, first: {report.rejected[0]}" if report.rejected else None
            )
            if fetched is not None:
                state.etag, state.last_modified = fetched.etag, fetched.last_modified
        events(
            "source.ingested",
            source=name,
            new=report.new,
            updated=report.updated,
            joined=report.joined,
            unchanged=report.unchanged,
            rejected=len(report.rejected),
            problems=len(report.problems),
        )
        return report
    except DigestError as e:
        error, hint = _scrubbed(str(e), location), e.hint
        if isinstance(e, FetchStopped):  # not the source's fault: nothing to record against it
            return IngestReport(source=name, error=error, hint="nothing of it was stored")
        events("source.failed", logging.WARNING, source=name, error=error)
        _record_failure(factory, location, error, isinstance(e, SourceGone), now)
        return IngestReport(source=name, error=error, hint=hint, gone=isinstance(e, SourceGone))
    except Exception as e:  # anything else one source raises is still only that source's failure
        error = _scrubbed(f"{name}: {type(e).__name__} while reading this source: {e}", location)
        events("source.crashed", logging.ERROR, exc_info=True, source=name, error=error)
        _record_failure(factory, location, error, False, now)
        return IngestReport(
            source=name,
            error=error,
            hint="nothing from this source was stored; digest did not expect this input: report it with the source",
        )


def ingest_record(
    factory: sessionmaker[Session], record: dict[str, object], source: str, now: datetime
) -> IngestReport:
    """One practice given as a JSON export's record (the REST API's POST): parsed and checked as an export is,
    deduplicated and stored as any ingest stores (one transaction, the planning lock on PostgreSQL), under the source
    name ``source``. A record left out is in the report's ``rejected``, with why."""
    import json

    from digest.ingest.export import parse_json

    parsed = parse_json(json.dumps({"practices": [record]}), source)
    with factory() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": MEMBERSHIP_LOCK})
        report = store_parsed(session, parsed, source, now)
    events("source.ingested", source=source, new=report.new, updated=report.updated, rejected=len(report.rejected))
    return report


def ingest_sources(
    factory: sessionmaker[Session],
    sources: Sequence[SourceConfig],
    now: datetime,
    policy: HttpPolicy | None = None,
    skip_gone: bool = False,
    progress: Progress = _no_progress,
    stop: threading.Event | None = None,
) -> list[IngestReport]:
    """Ingest sources one by one, each in its own transaction; one failing stops no other."""
    policy = policy or HttpPolicy()
    reports = []
    for source in sources:
        if stop is not None and stop.is_set():
            break
        started = time.perf_counter()
        report = ingest_one(factory, source, now, policy, skip_gone, progress, stop)
        _observe(report, time.perf_counter() - started)
        reports.append(report)
    return reports


def _observe(report: IngestReport, seconds: float) -> None:
    """This process's metrics of one source's read (the source by its redacted name)."""
    name = report.source
    outcome = (
        SourceStatus.FAILED if report.error else SourceStatus.NOT_MODIFIED if report.not_modified else SourceStatus.OK
    )
    metrics.INGEST_RUNS.labels(name, outcome).inc()
    metrics.INGEST_SECONDS.labels(name).observe(seconds)
    for result, count in (("new", report.new), ("updated", report.updated), ("left_out", len(report.rejected))):
        if count:
            metrics.INGEST_ITEMS.labels(name, result).inc(count)


def source_overview(session: Session, configured: Sequence[SourceConfig]) -> list[dict[str, object]]:
    """Every configured source, then every other source ever ingested, with its last fetch, status and error."""
    states = {s.location: s for s in session.scalars(select(SourceState).order_by(SourceState.location))}
    by_location = {s.location: s for s in configured}
    rows: list[dict[str, object]] = []
    for location in [*by_location, *(loc for loc in states if loc not in by_location)]:
        conf, state = by_location.get(location), states.get(location)
        rows.append(
            {
                "location": redact_url(location),
                "configured": conf is not None,
                "enabled": conf.enabled if conf else None,
                "theme": conf.theme if conf else None,
                "format": conf.format if conf else None,
                "status": state.status if state else "never fetched",
                "last_fetch_at": state.last_fetch_at.isoformat() if state else None,
                "last_ok_at": state.last_ok_at.isoformat() if state and state.last_ok_at else None,
                "failures": state.failures if state else 0,
                "items": state.items if state else None,
                "rejected": state.rejected if state else None,
                "last_error": state.last_error if state else None,
                "etag": state.etag if state else None,
                "last_modified": state.last_modified if state else None,
            }
        )
    return rows
