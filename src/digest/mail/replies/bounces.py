"""Late bounces and complaints read back from a Maildir or mbox, and acted on.

Every message is read the one way (digest.mail.replies.reader: DSNs, prose bounces, ARF complaints, auto-replies).
Every digest leaves with an envelope sender of its own (digest.mail.build.verp): a report that comes back to that
address names the digest, hence the subscriber; one whose recipient was rewritten is matched by the returned
message's Message-ID instead, never by an address quoted in a body. A hard bounce (the address is gone) is kept and
counted (suppressed at ``suppress_after_bounces``, as for a refusal during the SMTP transaction); a soft one is kept
with its reason (repeated ones lead to a "do you still want these?", digest.mail.send.sunset); a complaint
suppresses at once. Anything else in the mailbox is skipped and named.
"""

from __future__ import annotations

import email
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import logs, metrics
from digest.config import Settings
from digest.mail.build.verp import digest_of, unsubscribing
from digest.mail.replies.mailboxes import messages_of, shown
from digest.mail.replies.reader import (
    COMPLAINT,
    HARD,
    SOFT,
    Reading,
    feedback_fields,
    read_message,
    returned_message_id,
)
from digest.store import outbox
from digest.store.bounces import count_hard_bounce, record, suppress_for_complaint, unsubscribe_by_mail
from digest.store.db import transaction
from digest.store.models import Bounce, Digest, Subscriber
from digest.store.states import BounceKind, SubscriberStatus
from digest.text.clean import header_safe

events = logs.EventLog(__name__)


def report_key(digest_id: int, message_id: str | None, reading: Reading) -> str:
    """What a report is about, as a key: the digest, the returned message, the recipient and the status. Two copies
    of one report share it whatever their bytes; a report about a resend of the digest (another Message-ID), or
    a later one with another status (delayed, then failed), does not."""
    about = "\n".join((str(digest_id), message_id or "", reading.recipient.lower(), reading.status, reading.kind))
    return hashlib.sha256(about.encode()).hexdigest()


@dataclass
class BounceReport:
    """What reading a bounce mailbox did."""

    source: str
    read: int = 0
    hard: int = 0
    soft: int = 0
    suppressed: int = 0
    # Spam complaints (ARF) matched to a digest of ours: each suppresses its subscriber at once.
    complaints: int = 0
    # Mails to a digest's List-Unsubscribe mailto: that unsubscribed its reader.
    unsubscribed: int = 0
    # Counted by an earlier read of the same mailbox.
    already: int = 0
    # (mailbox key, why it was not counted): unrelated mail, reports of success, bounces of no digest of ours.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "read": self.read,
            "hard": self.hard,
            "soft": self.soft,
            "suppressed": self.suppressed,
            "complaints": self.complaints,
            "unsubscribed": self.unsubscribed,
            "already": self.already,
            "skipped": [{"key": k, "why": w} for k, w in self.skipped],
        }


def _digest_by(
    session: Session, settings: Settings, addresses: tuple[str, ...], message_id: str | None
) -> Digest | None:
    """The digest a report is about: by our return path (VERP) among ``addresses``, else by the returned
    Message-ID; never by an address quoted in a body (nobody can get someone else dropped)."""
    for address in addresses:
        digest_id = digest_of(settings, address)
        if digest_id is not None:
            found = session.get(Digest, digest_id)
            if found is not None:
                return found
    if message_id:
        return session.scalar(select(Digest).where(Digest.message_id == message_id))
    return None


def complaint_about(message: EmailMessage) -> tuple[tuple[str, ...], str | None, str] | None:
    """An ARF report (RFC 5965): the addresses that may carry our return path (Original-Mail-From, and where the
    report was delivered), the returned Message-ID and the feedback type; None for any other mail."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "feedback-report":
        return None
    fields = feedback_fields(message)
    returned_id = returned_message_id(message)
    mail_from = fields.get("original-mail-from", "").strip("<> ")
    addressed = tuple(str(v) for name in ("Delivered-To", "X-Original-To", "To") for v in message.get_all(name, []))
    return ((mail_from, *addressed) if mail_from else addressed), returned_id, fields.get("feedback-type", "abuse")


def read_bounces(factory: sessionmaker[Session], settings: Settings, path: str | Path, now: datetime) -> BounceReport:
    """Read every message in a Maildir, an mbox or an IMAP folder and act on each once; see the module's docstring."""
    from email import policy

    report = BounceReport(shown(str(path)))
    for key, data in messages_of(path, single=False, timeout=settings.http_timeout):
        report.read += 1
        copy = hashlib.sha256(data).hexdigest()
        try:
            text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            parsed = email.message_from_bytes(text, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            readings = read_message(parsed)
            complaint = complaint_about(parsed) if any(r.kind == COMPLAINT for r in readings) else None
        except Exception as e:  # a malformed message is skipped and named, the rest are read
            report.skipped.append((key, f"unreadable report: {type(e).__name__}: {e}"))
            continue
        if complaint is not None:
            _complained(factory, settings, key, complaint, now, report)
            continue
        if _unsubscribed(factory, settings, key, parsed, now, report):
            continue
        failures = [r for r in readings if r.kind in (HARD, SOFT)]
        if not failures:
            first = readings[0]
            subject = header_safe(str(parsed.get("Subject", "")), limit=80)
            report.skipped.append((key, f"not a delivery failure ({first.kind}: {first.reason}; subject {subject!r})"))
            continue
        _bounced(factory, settings, key, parsed, failures, copy, now, report)
    return report


def _addressed(message: EmailMessage) -> tuple[str, ...]:
    """Where the message was delivered to (where our VERP or unsubscribe token is)."""
    return tuple(
        str(v) for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To") for v in message.get_all(name, [])
    )


def _unsubscribed(
    factory: sessionmaker[Session],
    settings: Settings,
    key: str,
    message: EmailMessage,
    now: datetime,
    report: BounceReport,
) -> bool:
    """A mail to a digest's List-Unsubscribe mailto: (RFC 2369): its reader leaves. True when it was one (acted on or
    not); the token's HMAC is ours or it names no one."""
    digest_id = next((d for a in _addressed(message) if (d := unsubscribing(settings, a)) is not None), None)
    if digest_id is None:
        return False
    with transaction(factory) as session:
        digest = session.get(Digest, digest_id)
        if digest is None:
            report.skipped.append((key, "an unsubscribe mail for a digest no longer here"))
            return True
        left = unsubscribe_by_mail(session.connection(), digest.subscriber_id, now)
    if not left:
        report.already += 1
        return True
    report.unsubscribed += 1
    metrics.UNSUBSCRIBES.labels("mail").inc()
    events("subscriber.unsubscribed", digest_id=digest_id, via="mail")
    return True


def _bounced(
    factory: sessionmaker[Session],
    settings: Settings,
    key: str,
    message: EmailMessage,
    failures: list[Reading],
    copy: str,
    now: datetime,
    report: BounceReport,
) -> None:
    """A bounce (hard or soft) kept once for the digest it returns, and a hard one counted."""
    addressed = _addressed(message)
    message_id = returned_message_id(message)
    with transaction(factory) as session:
        digest = _digest_by(session, settings, addressed, message_id)
        if digest is None:
            whom = ", ".join(r.recipient for r in failures if r.recipient) or "someone"
            report.skipped.append((key, f"a {failures[0].kind} bounce for {whom} of no digest here"))
            return
        subscriber = session.get(Subscriber, digest.subscriber_id)
        assert subscriber is not None
        # A report about several recipients: the reading about ours (the digest went to one).
        mine = [r for r in failures if r.recipient.lower() == subscriber.email.lower()]
        reading = (mine or failures)[0]
        # The same report again (re-read, replayed, relayed with another Received: line) counts once; rows
        # recorded by earlier versions are keyed by their copy's bytes, which a re-read still matches.
        source = report_key(digest.id, message_id, reading)
        kind = BounceKind(reading.kind)
        status = reading.status or "-"
        if session.scalar(select(Bounce.id).where(Bounce.source == copy)) is not None or not record(
            session.connection(),
            source,
            subscriber.id,
            digest.id,
            kind,
            status,
            reading.reason,
            reading.diagnostic,
            now,
        ):
            report.already += 1
            return
        error = f"late bounce {status} ({reading.reason}): {reading.diagnostic or 'no diagnostic'}"
        if kind == BounceKind.HARD:
            report.hard += 1
            if subscriber.status == SubscriberStatus.CONFIRMED:
                if count_hard_bounce(session.connection(), subscriber.id, error, settings.suppress_after_bounces, now):
                    report.suppressed += 1
        else:
            report.soft += 1
    metrics.BOUNCES.labels(kind, reading.reason, "dsn").inc()
    events(
        f"bounce.{kind.value}",
        logging.WARNING,
        digest_id=digest.id,
        status=status,
        reason=reading.reason,
        diagnostic=reading.diagnostic,
    )


def _complained(
    factory: sessionmaker[Session],
    settings: Settings,
    key: str,
    complaint: tuple[tuple[str, ...], str | None, str],
    now: datetime,
    report: BounceReport,
) -> None:
    """A spam complaint stops everything for that subscriber at once (Gmail's and Yahoo's rules: complaints are
    what gets a sender blocked), matched by our return path or the returned Message-ID only."""
    addresses, message_id, feedback = complaint
    with transaction(factory) as session:
        digest = _digest_by(session, settings, addresses, message_id)
        if digest is None:
            report.skipped.append((key, f"a complaint ({feedback}) about no digest here"))
            return
        if not suppress_for_complaint(session.connection(), digest.subscriber_id, f"complaint: {feedback}", now):
            report.already += 1
            return
        digest_id, subscriber_id = digest.id, digest.subscriber_id

        def tell() -> tuple[dict[str, object], str]:
            email = session.scalars(select(Subscriber.email).where(Subscriber.id == subscriber_id)).one()
            return {"email": email, "digest_id": digest_id, "feedback_type": feedback}, email

        outbox.emit(session.connection(), "complaint.received", now, tell)
    report.complaints += 1
    report.suppressed += 1
    metrics.COMPLAINTS.inc()
    events("complaint.received", logging.WARNING, digest_id=digest.id, feedback=feedback)
