"""Subscribers from a CSV file (`digest subscribers import`): validated row by row, stored in batches."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import SourceError, SubscriberError
from digest.schedules.slots import Choice, ScheduleError, parse_choice
from digest.store.db import transaction
from digest.store.models import Subscriber, Subscription, Theme
from digest.store.states import SubscriberStatus
from digest.subscriptions.subscribers import apply_choice, membership_cursor, normalize_email
from digest.text.clean import slugify
from digest.text.i18n import UnknownLanguage, supported


@dataclass
class ImportReport:
    """What a CSV import did; ``errors`` are (line, message) for rows not imported or themes skipped."""

    source: str
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def import_csv(
    factory: sessionmaker[Session],
    path: str,
    now: datetime,
    confirmed: bool = False,
    backfill_days: int = 0,
    chunk: int = 1000,
) -> ImportReport:
    """Import `email,themes` rows (themes `;`-separated names or slugs), with optional `frequency,day,hour,timezone`
    and `language` (of their mails: en, fr, es) columns; bad rows are reported by line and field."""
    report = ImportReport(source=path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot read as UTF-8 CSV: {e}", "save the file as UTF-8 CSV") from e
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower() for f in reader.fieldnames or []}
    if not {"email", "themes"} <= fields:
        raise SourceError(f"{path}: the header must name the columns email and themes", "add the header row")

    with factory() as session:
        themes = {t.slug: t.id for t in session.scalars(select(Theme))}
    rows: dict[str, set[int]] = {}
    lines: dict[str, int] = {}
    choices: dict[str, Choice] = {}
    languages: dict[str, str] = {}
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
        try:
            address = normalize_email(row["email"])
        except SubscriberError as e:
            report.errors.append((line, str(e)))
            continue
        theme_ids: set[int] = set()
        for name in row["themes"].split(";"):
            if not name.strip():
                continue
            theme_id = themes.get(slugify(name))
            if theme_id is None:
                report.errors.append((line, f"{address}: unknown theme {name.strip()!r}; skipped that theme"))
            else:
                theme_ids.add(theme_id)
        if not theme_ids:
            report.errors.append((line, f"{address}: no known theme; row skipped"))
            continue
        try:
            choice = parse_choice(row.get("frequency"), row.get("day"), row.get("hour"), row.get("timezone"))
        except ScheduleError as e:
            report.errors.append((line, f"{address}: {e}; row skipped"))
            continue
        if (row.get("language") or "").strip():
            try:
                languages[address] = supported(row["language"])
            except UnknownLanguage as e:
                report.errors.append((line, f"{address}: language: {e}; row skipped"))
                continue
        if choice != Choice():
            choices[address] = choice
        rows.setdefault(address, set()).update(theme_ids)
        lines.setdefault(address, line)

    addresses = list(rows)
    for start in range(0, len(addresses), chunk):
        batch = addresses[start : start + chunk]
        with transaction(factory) as session:
            cursor = membership_cursor(session, now, backfill_days)
            _import_batch(session, batch, rows, lines, now, confirmed, cursor, report, choices, languages)
    report.errors.sort()
    return report


def _import_batch(
    session: Session,
    batch: list[str],
    rows: dict[str, set[int]],
    lines: dict[str, int],
    now: datetime,
    confirmed: bool,
    cursor: int,
    report: ImportReport,
    choices: dict[str, Choice],
    languages: dict[str, str],
) -> None:
    known = {s.email: s for s in session.scalars(select(Subscriber).where(Subscriber.email.in_(batch)))}
    for address, subscriber in list(known.items()):
        if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
            # Consent: someone who left comes back only through the subscribe page, never by import.
            report.errors.append((lines[address], f"{address}: unsubscribed earlier; not re-subscribed"))
            batch = [a for a in batch if a != address]
            del known[address]
    fresh = [a for a in batch if a not in known]
    if fresh:
        status = SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING
        session.execute(
            insert(Subscriber),
            [
                {
                    "email": a,
                    "status": status,
                    "created_at": now,
                    "confirmed_at": now if confirmed else None,
                    # Consent given elsewhere: no welcome is owed (`subscribe --confirmed --welcome` sends one).
                    "welcomed_at": now if confirmed else None,
                    **asdict(choices.get(a, Choice())),
                    "language": languages.get(a),
                }
                for a in fresh
            ],
        )
        report.created += len(fresh)
    for address, subscriber in known.items():
        report.updated += 1
        if address in choices:
            apply_choice(subscriber, choices[address])
            subscriber.next_due_at = None  # placed again by the next planning run
        if address in languages:
            subscriber.language = languages[address]
        if confirmed and subscriber.status != SubscriberStatus.CONFIRMED:
            subscriber.status, subscriber.confirmed_at = SubscriberStatus.CONFIRMED, now
            subscriber.welcomed_at = subscriber.welcomed_at or now
    ids = dict(session.execute(select(Subscriber.email, Subscriber.id).where(Subscriber.email.in_(batch))).all())
    have = set(
        session.execute(
            select(Subscription.subscriber_id, Subscription.theme_id).where(
                Subscription.subscriber_id.in_(list(ids.values()))
            )
        ).all()
    )
    new_subscriptions: list[dict[str, Any]] = [
        {"subscriber_id": ids[a], "theme_id": t, "created_at": now, "cursor": cursor}
        for a in batch
        for t in sorted(rows[a])
        if (ids[a], t) not in have
    ]
    if new_subscriptions:
        session.execute(insert(Subscription), new_subscriptions)
