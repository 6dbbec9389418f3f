"""One reading of whatever comes back to the bounce address: every message gets a kind — hard, soft, complaint,
auto-reply, delivered or not-a-report — with a reason from one vocabulary (digest.mail.replies.classify), the
status found and the recipient, one reading per recipient a report names. Pure: bytes in, readings out; it never
raises on a message it cannot parse (that is a not-a-report with its reason).

Formats: RFC 3464 delivery status notifications (any MTA that writes them), RFC 5965 feedback reports (ARF), RFC
3834 auto-replies (and the X-Autoreply, Precedence and vacation subjects of those that ignore it), and bounces
without a DSN, in prose (qmail and its clones, Exim without DSN, webmail providers' own texts), read from their
words and the recipients they name (X-Failed-Recipients, qmail's "<address>:" lines).
"""

from __future__ import annotations

import email
import re
from dataclasses import asdict, dataclass
from email.message import EmailMessage, Message

from digest.mail.replies.classify import classify
from digest.text.clean import header_safe

HARD, SOFT, COMPLAINT, AUTO_REPLY, DELIVERED, NOT_A_REPORT = (
    "hard",
    "soft",
    "complaint",
    "auto-reply",
    "delivered",
    "not-a-report",
)

_ADDRESS = re.compile(r"<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?")
_BOUNCER = re.compile(r"mailer-daemon|postmaster|mail delivery (subsystem|system)|mail administrator", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (status notification|failure|has failed|failed)|failure notice|"
    r"mail delivery failed|could not be delivered|non.?delivery|rejected|returned to sender|mail failure|"
    r"address not found|delivery problem|nicht zustellbar|non remis|no entregado|配信|エラー|返送|送信失敗",
    re.I,
)
_VACATION_SUBJECT = re.compile(
    r"out of (the )?office|auto(matic)?[ -]?(reply|response|antwort)|vacation|on leave|absence|abwesen|"
    r"réponse automatique|absent|fuera de la oficina|respuesta automática|ausente|不在|自動応答|отпуск|"
    r"автоответ",
    re.I,
)
_QUOTED_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+@[^<>\s]+>)", re.I | re.M)
# Challenge-response systems (the sender is asked to prove they are a person): an auto-reply, never a bounce.
_CHALLENGE = re.compile(
    r"confirm (that )?(your|you sent (this|the)) (message|mail|e-?mail)|challenge.response|verify (that )?you are "
    r"(a )?(human|person)|whitelist|allow ?list request|spam ?arrest|boxbe|mailsbestfriend",
    re.I,
)


@dataclass(frozen=True)
class Reading:
    """One message (and recipient) read: its kind, the recipient, the status found, the reason and the words."""

    kind: str
    recipient: str = ""
    status: str = ""
    reason: str = ""
    diagnostic: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def read_bytes(data: bytes) -> list[Reading]:
    """Readings of a raw message (any line ends: LF, CRLF or CR alone)."""
    from email import policy  # here: `digest send` loads this module with the CLI, and must start fast

    try:
        text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        message = email.message_from_bytes(text, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return read_message(message)
    except Exception as e:  # whatever a message does to the parser: said, never raised
        return [Reading(NOT_A_REPORT, reason="unparsable", diagnostic=f"{type(e).__name__}: {e}"[:300])]


def read_message(message: EmailMessage) -> list[Reading]:
    """Readings of a parsed message: one per recipient a report names (one for a message that names none)."""
    report_type = str(message.get_param("report-type", "")).lower() if message.is_multipart() else ""
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return [_complaint(message)]
    if message.get_content_type() == "multipart/report" and report_type == "delivery-status":
        found = _dsn(message)
        if found:
            return found
    # A bounce before an auto-reply: Exim marks its bounces "Auto-Submitted: auto-replied" (RFC 3834 allows it).
    if _looks_like_a_bounce(message):
        return _prose_bounce(message)
    if _auto_reply(message):
        challenge = _CHALLENGE.search(_subject(message)) or _CHALLENGE.search(_text(message)[:2000])
        return [
            Reading(AUTO_REPLY, reason="challenge-response" if challenge else "vacation", diagnostic=_subject(message))
        ]
    return [Reading(NOT_A_REPORT, reason="not a report", diagnostic=_subject(message))]


def _subject(message: Message) -> str:
    return header_safe(str(message.get("Subject", "")), limit=200)


def report_fields(block: Message) -> dict[str, str]:
    """A report's fields (a DSN's recipient block, an ARF report), names lower-cased, values on one line."""
    return {k.lower(): " ".join(str(v).split()) for k, v in block.items()}


def feedback_fields(message: Message) -> dict[str, str]:
    """The fields of an ARF report's message/feedback-report part (empty when it has none)."""
    fields: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else [email.message_from_string(str(payload))]
            for block in blocks:
                if isinstance(block, Message):
                    fields |= report_fields(block)
    return fields


def returned_message_id(message: Message) -> str | None:
    """The Message-ID of the message a report returns (whole, or its headers only), if it has one."""
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            headers = part.get_payload()
            inner = headers[0] if isinstance(headers, list) and headers else None
            if isinstance(headers, str):
                inner = email.message_from_string(headers)
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
    # A bounce without a DSN quotes the returned message in its text (qmail's "Below this line is a copy").
    quoted = _QUOTED_ID.search(_text(message)) if isinstance(message, EmailMessage) else None
    return quoted.group(1) if quoted else None


def _complaint(message: EmailMessage) -> Reading:
    """An ARF report: the recipient who complained as the report gives it (often redacted: the caller matches it by
    the return path or the returned Message-ID, never by an address quoted in a body)."""
    fields = feedback_fields(message)
    recipient = fields.get("original-rcpt-to", "")
    return Reading(COMPLAINT, _address(recipient), "", "feedback", fields.get("feedback-type", "abuse"))


def _auto_reply(message: Message) -> bool:
    """RFC 3834 and the headers and subjects of those that ignore it. A bounce is never an auto-reply."""
    submitted = str(message.get("Auto-Submitted", "")).lower()
    if submitted.startswith("auto-replied"):
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if str(message.get("Precedence", "")).lower() == "auto_reply":
        return True
    bouncer = _BOUNCER.search(str(message.get("From", "")))
    return not bouncer and bool(_VACATION_SUBJECT.search(_subject(message)))


def _dsn(message: EmailMessage) -> list[Reading]:
    """A reading per recipient block of an RFC 3464 report."""
    readings = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            if not isinstance(block, Message):
                continue
            fields = report_fields(block)
            recipient = _address(fields.get("final-recipient") or fields.get("original-recipient") or "")
            action = fields.get("action", "").lower()
            diagnostic = header_safe(fields.get("diagnostic-code", ""), limit=1000)
            if action in ("delivered", "relayed", "expanded"):
                readings.append(Reading(DELIVERED, recipient, fields.get("status", ""), action, diagnostic))
                continue
            status = fields.get("status", "")
            permanent = action == "failed" if action in ("failed", "delayed") else status.startswith("5")
            verdict = classify(status, diagnostic, permanent)
            readings.append(Reading(verdict.kind, recipient, verdict.status or status, verdict.reason, diagnostic))
    return readings


def _looks_like_a_bounce(message: EmailMessage) -> bool:
    """X-Failed-Recipients, or a mail system's sender (MAILER-DAEMON, postmaster ...), or a bounce's subject from a
    sender that is not a person's auto-reply."""
    sender = str(message.get("From", ""))
    if message.get("X-Failed-Recipients") or _BOUNCER.search(sender):
        return True
    return bool(_BOUNCE_SUBJECT.search(_subject(message))) and not _auto_reply(message)


def _text(message: EmailMessage) -> str:
    """The message's plain text (decoded from its transfer encoding and charset), or ""."""
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    return text if isinstance(text, str) else ""


def _prose_bounce(message: EmailMessage) -> list[Reading]:
    """A bounce without a DSN: its words classified, its recipients from X-Failed-Recipients, the lines that name
    them (qmail's "<address>:" and the like) or any address its own words name, else one reading with none."""
    text = _text(message)
    # The part before the returned message: its headers would name our own addresses.
    own = re.split(r"\n-+ ?(original message|this is a copy of the message|below this line)", text, flags=re.I)[0]
    words = " ".join(own.split())[:2000]
    verdict = classify("", words, permanent=True)
    recipients = [_address(a) for a in str(message.get("X-Failed-Recipients", "")).split(",") if a.strip()]
    if not recipients:
        recipients = [m.group(1) for m in re.finditer(r"^\s*<([^>\s]+@[^>\s]+)>\s*:", own, flags=re.M)]
    if not recipients:
        # Any address its own words name (Exim without DSN, Domino, webmail providers' texts), but the bounce's own
        # sender and the return path it came to.
        ours = {_address(str(v)).lower() for name in ("From", "To") for v in message.get_all(name, [])}
        recipients = list(dict.fromkeys(m.group(1) for m in _ADDRESS.finditer(own) if m.group(1).lower() not in ours))
    diagnostic = header_safe(words, limit=300)
    return [Reading(verdict.kind, r, verdict.status, verdict.reason, diagnostic) for r in recipients] or [
        Reading(verdict.kind, "", verdict.status, verdict.reason, diagnostic)
    ]


def _address(value: str) -> str:
    """The address in a field such as "rfc822; Ana@Example.org" (as written; matching folds case itself)."""
    found = _ADDRESS.search(value.split(";")[-1])
    return found.group(1) if found else ""
