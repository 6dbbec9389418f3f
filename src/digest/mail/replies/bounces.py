"""Late bounces: delivery status notifications (RFC 3464) read back from a Maildir or mbox.

Every digest leaves with an envelope sender of its own (digest.mail.build.verp). A notification that comes back to that
address names the digest, hence the subscriber; one whose recipient was rewritten is
matched by the returned message's Message-ID instead. A permanent failure (Action: failed, Status 5.x.x)
counts a hard bounce (the address is suppressed at ``suppress_after_bounces``, as for a 5xx during the SMTP
transaction); a temporary one (delayed, 4.x.x) is recorded. Anything else in the mailbox is skipped and named.
"""

from __future__ import annotations

import email
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import logs, metrics
from digest.config import Settings
from digest.errors import SourceError
from digest.mail.build.verp import digest_of
from digest.mail.replies.classify import HARD, classify
from digest.mail.replies.reader import feedback_fields, report_fields, returned_message_id
from digest.store.bounces import count_hard_bounce, suppress_for_complaint
from digest.store.db import transaction
from digest.store.models import Bounce, Digest, Subscriber
from digest.store.states import BounceKind, SubscriberStatus
from digest.text.clean import header_safe

events = logs.EventLog(__name__)
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


@dataclass(frozen=True)
class Notification:
    """What one delivery status notification says about the (first failed) recipient."""

    kind: BounceKind
    status: str
    diagnostic: str
    recipient: str
    # Addresses the notification was delivered to (where a VERP token is), and the returned Message-ID.
    addressed_to: tuple[str, ...]
    message_id: str | None
    # Why, from the vocabulary of digest.mail.replies.classify ("user-unknown", "mailbox-full" ...).
    reason: str = "undetermined"


def report_key(digest_id: int, note: Notification) -> str:
    """What a report is about, as a key: the digest, the returned message, the recipient and the status. Two copies
    of one report share it whatever their bytes; a report about a resend of the digest (another Message-ID), or
    a later one with another status (delayed, then failed), does not."""
    about = "\n".join((str(digest_id), note.message_id or "", note.recipient.lower(), note.status, note.kind))
    return hashlib.sha256(about.encode()).hexdigest()


def read_notification(message: EmailMessage) -> Notification | None:
    """The failure a DSN (multipart/report; report-type=delivery-status) reports; None for any other mail and
    for reports of success (delivered, relayed, expanded)."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    status_part = next((p for p in message.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        return None
    blocks = status_part.get_payload()
    if not isinstance(blocks, list):
        return None
    chosen: dict[str, str] | None = None
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        if not isinstance(block, Message):
            continue
        fields = report_fields(block)
        action = fields.get("action", "").lower()
        status = fields.get("status", "")
        if action in ("failed", "delayed") or status[:1] in ("4", "5"):
            chosen = fields
            break
    if chosen is None:
        return None
    code = _STATUS.search(chosen.get("status", ""))
    action = chosen.get("action", "").lower()
    permanent = action == "failed" if action in ("failed", "delayed") else bool(code and code.group(1) == "5")
    returned_id = returned_message_id(message)
    recipient = chosen.get("final-recipient", chosen.get("original-recipient", "")).split(";")[-1].strip()
    addressed = tuple(
        str(v) for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To") for v in message.get_all(name, [])
    )
    diagnostic = header_safe(chosen.get("diagnostic-code", ""), limit=1000)
    # A permanent failure is a hard bounce only when the address is gone (5.1.1, 5.1.2 ...): a full mailbox or a
    # refusal of this message or sender (5.2.2, 5.7.x, 5.3.4) is soft, whatever its class says.
    verdict = classify(chosen.get("status", ""), diagnostic, permanent)
    return Notification(
        kind=BounceKind.HARD if verdict.kind == HARD else BounceKind.SOFT,
        status=code.group(0) if code else chosen.get("status", "")[:20],
        diagnostic=diagnostic,
        reason=verdict.reason,
        recipient=recipient,
        addressed_to=addressed,
        message_id=returned_id,
    )


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
            "already": self.already,
            "skipped": [{"key": k, "why": w} for k, w in self.skipped],
        }


def _maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    """The messages of a Maildir's new/ and cur/, whichever of them exist (an MTA may have made only one so far)."""
    folders = [path / sub for sub in ("new", "cur") if (path / sub).is_dir()]
    if not folders:
        raise SourceError(f"{path}: not a Maildir (no new/ or cur/)", "give a Maildir folder or an mbox file")
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            try:
                data = (folder / name).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue  # gone meanwhile (another reader moved it)
            yield f"{folder.name}/{name.split(':', 1)[0]}", data


def _messages(path: Path) -> Iterator[tuple[str, bytes]]:
    return messages_of(path, single=False)


def messages_of(path: Path, single: bool = True) -> Iterator[tuple[str, bytes]]:
    """The messages of a Maildir, an mbox, or (``single``) a file holding one message; each with its key."""
    import mailbox  # here: a send run needs this module's VERP addresses, not its readers

    if path.is_dir():
        yield from _maildir(path)
        return
    if not path.is_file():
        raise SourceError(f"{path}: no such Maildir or mbox", "check the path (or bounce_maildir)")
    with path.open("rb") as first:
        start = first.read(5)
    if single and start != b"From ":
        yield str(path), path.read_bytes()
        return
    if start and start != b"From ":
        raise SourceError(
            f"{path}: not an mbox file (an mbox starts with a 'From ' line): nothing read",
            "give a Maildir folder or an mbox file",
        )
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            try:
                with box.get_file(key) as handle:
                    yield str(key), handle.read()
            except (OSError, KeyError):
                continue  # gone meanwhile
    finally:
        box.close()


def _digest_for(session: Session, settings: Settings, note: Notification) -> Digest | None:
    return _digest_by(session, settings, note.addressed_to, note.message_id)


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
    """Read every notification in a Maildir or mbox and record it once; see the module's docstring."""
    from email import policy

    location = Path(path)
    report = BounceReport(str(location))
    for key, data in _messages(location):
        report.read += 1
        copy = hashlib.sha256(data).hexdigest()
        parsed = email.message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        try:
            complaint = complaint_about(parsed)
        except Exception as e:  # a malformed report is skipped and named, the rest are read
            report.skipped.append((key, f"unreadable report: {type(e).__name__}: {e}"))
            continue
        if complaint is not None:
            _complained(factory, settings, key, complaint, now, report)
            continue
        try:
            note = read_notification(parsed)
        except Exception as e:  # a malformed report is skipped and named, the rest are read
            report.skipped.append((key, f"unreadable report: {type(e).__name__}: {e}"))
            continue
        if note is None:
            subject = header_safe(str(parsed.get("Subject", "")), limit=80)
            report.skipped.append((key, f"not a delivery failure report (subject {subject!r})"))
            continue
        with transaction(factory) as session:
            digest = _digest_for(session, settings, note)
            if digest is None:
                whom = note.recipient or "someone"
                report.skipped.append((key, f"a {note.kind} bounce for {whom} of no digest here"))
                continue
            # The same report again (re-read, replayed, relayed with another Received: line) counts once; rows
            # recorded by earlier versions are keyed by their copy's bytes, which a re-read still matches.
            source = report_key(digest.id, note)
            if session.scalar(select(Bounce.id).where(Bounce.source.in_((source, copy)))) is not None:
                report.already += 1
                continue
            subscriber = session.get(Subscriber, digest.subscriber_id)
            assert subscriber is not None
            session.add(
                Bounce(
                    source=source,
                    subscriber_id=subscriber.id,
                    digest_id=digest.id,
                    kind=note.kind,
                    status=note.status,
                    diagnostic=note.diagnostic,
                    received_at=now,
                )
            )
            error = f"late bounce {note.status} ({note.reason}): {note.diagnostic or 'no diagnostic'}"
            if note.kind == BounceKind.HARD:
                report.hard += 1
                session.flush()
                if subscriber.status == SubscriberStatus.CONFIRMED:
                    if count_hard_bounce(
                        session.connection(), subscriber.id, error, settings.suppress_after_bounces, now
                    ):
                        report.suppressed += 1
            else:
                report.soft += 1
        metrics.BOUNCES.labels(note.kind, "dsn").inc()
        events(
            f"bounce.{note.kind.value}",
            logging.WARNING,
            digest_id=digest.id,
            status=note.status,
            diagnostic=note.diagnostic,
        )
    return report


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
    report.complaints += 1
    report.suppressed += 1
    metrics.COMPLAINTS.inc()
    events("complaint.received", logging.WARNING, digest_id=digest.id, feedback=feedback)
