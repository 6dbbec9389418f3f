"""MIME assembly of a rendered digest, straight from its parts.

Built by hand rather than with EmailMessage(policy=SMTP), which costs ten times as much per message and
folds (then RFC 2047-encodes) long List-Unsubscribe headers that clients then ignore. Every header value
that holds data passes through ``header_safe`` first: no CR, LF or control character reaches a header.
Every header is ASCII but To for an address with a non-ASCII local part (RFC 6532, SMTPUTF8 only).
"""

from __future__ import annotations

import quopri
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from digest.mail.addresses import wire_address
from digest.text.clean import header_safe


@dataclass(frozen=True)
class Envelope:
    """What a message needs besides its bodies."""

    mail_from: str
    to: str
    subject: str
    message_id: str
    date: datetime
    list_id: str
    unsubscribe_url: str
    # A digest (bulk: List-* headers, Precedence) or a notice to one person (a confirmation: none of those).
    bulk: bool = True
    # Where replies go, when not to From.
    reply_to: str = ""


@lru_cache(maxsize=64)
def sender_address(mail_from: str) -> str:
    """The bare address of a From value (the SMTP envelope sender)."""
    return parseaddr(mail_from)[1]


def _encoded(value: str) -> str:
    value = header_safe(value, limit=900)
    return value if value.isascii() else Header(value, "utf-8", header_name="Subject").encode()


@lru_cache(maxsize=64)
def _from_header(mail_from: str) -> str:
    name, address = parseaddr(header_safe(mail_from))
    return formataddr((name, address), charset="utf-8")


def _qp(text: str) -> bytes:
    """Quoted-printable, every line within 76 characters (binascii lets an encoded trailing tab or space run a
    line to 78; such lines get one more soft break)."""
    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    lines = encoded.split(b"\n")
    if all(len(line) <= 76 for line in lines):
        return encoded
    return b"\n".join(_rebreak(line) for line in lines)


def _rebreak(line: bytes, limit: int = 76) -> bytes:
    """One encoded line split by soft breaks into pieces of at most ``limit`` characters (with their "="), never
    inside an =XX escape."""
    out = []
    while len(line) > limit:
        cut = limit - 1
        while b"=" in line[cut - 2 : cut]:
            cut -= 1
        out.append(line[:cut] + b"=")
        line = line[cut:]
    out.append(line)
    return b"\n".join(out)


def _body(content_type: str, encoded: bytes) -> bytes:
    return (
        f'Content-Type: {content_type}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'.encode()
        + encoded
    )


class EncodedBody:
    """A body encoded once (quoted-printable) with slots filled per message: for a rendering shared by many
    recipients, only the short per-recipient values are encoded again. Each filled value sits between soft line
    breaks, so every encoded line stays within 76 characters and the body decodes to the text with the values
    in place of the slots."""

    def __init__(self, text: str, slots: dict[str, str]) -> None:
        pattern = "(" + "|".join(re.escape(marker) for marker in slots.values()) + ")"
        names = {marker: name for name, marker in slots.items()}
        self.parts: list[bytes | str] = [
            names[piece] if n % 2 else _qp(piece) for n, piece in enumerate(re.split(pattern, text)) if piece or n % 2
        ]

    def fill(self, values: dict[str, str]) -> bytes:
        out: list[bytes] = []
        for n, part in enumerate(self.parts):
            piece = part if isinstance(part, bytes) else _qp(values[part])
            out.append(_soft_end(piece) if n + 1 < len(self.parts) else piece)
        return b"".join(out)


def _soft_end(encoded: bytes) -> bytes:
    """``encoded`` ending in a soft line break, its last line kept within 76 characters with the "="."""
    head, newline, last = encoded.rpartition(b"\n")
    return head + newline + _rebreak(last, 75) + b"=\n"


def build_message(envelope: Envelope, text: str | bytes, html: str | bytes) -> bytes:
    """A multipart/alternative message (text first, HTML last) as bytes with LF line ends; a body given as bytes
    is quoted-printable already."""
    boundary = "=_digest_" + secrets.token_hex(12)
    headers = [
        ("From", _from_header(envelope.mail_from)),
        # Punycode domain; a non-ASCII local part stays UTF-8 (RFC 6532), sent only where SMTPUTF8 is offered.
        ("To", header_safe(wire_address(envelope.to).address, limit=320)),
        ("Subject", _encoded(envelope.subject)),
        ("Date", format_datetime(envelope.date)),
        ("Message-ID", header_safe(envelope.message_id)),
    ]
    if envelope.reply_to:
        headers.append(("Reply-To", _from_header(envelope.reply_to)))
    if envelope.bulk:
        headers += [
            ("List-Id", f"Practice digest <{header_safe(envelope.list_id)}>"),
            ("List-Unsubscribe", f"<{header_safe(envelope.unsubscribe_url, limit=900)}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Precedence", "bulk"),
        ]
    headers += [
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {value}\n" for name, value in headers).encode("utf-8")
    sep = f"\n--{boundary}\n".encode()
    return (
        head
        + b"\nThis is a multipart message in MIME format."
        + sep
        + _body("text/plain", text if isinstance(text, bytes) else _qp(text))
        + sep
        + _body("text/html", html if isinstance(html, bytes) else _qp(html))
        + f"\n--{boundary}--\n".encode()
    )
