"""MIME assembly of a rendered digest, straight from its parts.

Built by hand rather than with EmailMessage(policy=SMTP), which costs ten times as much per message and
folds (then RFC 2047-encodes) long List-Unsubscribe headers that clients then ignore. Every header value
that holds data passes through ``header_safe`` first: no CR, LF or control character reaches a header.
Every header is ASCII but To for an address with a non-ASCII local part (RFC 6532, SMTPUTF8 only).
"""

from __future__ import annotations

import copy
import quopri
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from digest.mail.build.addresses import wire_address
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
    # The list's name in List-Id (its human part) and the language the bodies are written in (Content-Language).
    list_name: str = "Practice digest"
    language: str = ""
    # The address a mail unsubscribes at (List-Unsubscribe's mailto:, beside the https URL; RFC 2369); "": none.
    unsubscribe_mailto: str = ""


class DataForm(bytes):
    """A message as SMTP's DATA carries it (RFC 5321 4.5.2): CRLF line ends, a second dot before every line that
    begins with one, ending in CRLF (the final "." is the transport's). MessageTemplate lays a message out so once
    for all its copies, where converting each copy cost a sender more than building it; a transport sends it as it
    is."""

    def message(self) -> bytes:
        """The message itself, with LF line ends (a Maildir's; the dots single again)."""
        lines = self.replace(b"\r\n..", b"\r\n.")
        return (lines[1:] if lines.startswith(b"..") else lines).replace(b"\r\n", b"\n")


def data_form(piece: bytes, line_start: bool = True) -> bytes:
    """A piece of a message (LF line ends) in DATA's form: CRLF, and dots doubled where a line begins with one
    (the piece's own first byte too, when it begins a line)."""
    piece = piece.replace(b"\n", b"\r\n")
    if b"\n." in piece:
        piece = piece.replace(b"\r\n.", b"\r\n..")
    return b"." + piece if line_start and piece.startswith(b".") else piece


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
    if _PLAIN.fullmatch(text):  # a link: printable ASCII without "=", encoded as itself (lines cut below)
        encoded = text.encode("ascii")
        return encoded if len(encoded) <= 76 else _rebreak(encoded)
    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    lines = encoded.split(b"\n")
    if all(len(line) <= 76 for line in lines):
        return encoded
    return b"\n".join(_rebreak(line) for line in lines)


# What quoted-printable leaves as it is, on one line: printable ASCII but "=", and no space at the end.
_PLAIN = re.compile(r"[!-<>-~]([ !-<>-~]*[!-<>-~])?")


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


class EncodedBody:
    """A body encoded once (quoted-printable) with slots filled per message: for a rendering shared by many
    recipients, only the short per-recipient values are encoded again. Each filled value sits between soft line
    breaks, so every encoded line stays within 76 characters and the body decodes to the text with the values
    in place of the slots."""

    def __init__(self, text: str, slots: dict[str, str]) -> None:
        names = {marker: name for name, marker in slots.items()}
        pattern = "(" + "|".join(re.escape(marker) for marker in slots.values()) + ")"
        pieces = re.split(pattern, text) if slots else [text]
        parts: list[bytes | str] = [names[p] if n % 2 else _qp(p) for n, p in enumerate(pieces) if p or n % 2]
        # Every part but the last ends in a soft line break: the encoded text parts get theirs here, once.
        self.parts = [_soft_end(p) if isinstance(p, bytes) and n + 1 < len(parts) else p for n, p in enumerate(parts)]
        self.slots = {p for p in parts if isinstance(p, str)}
        self.ends_in_slot = bool(parts) and isinstance(parts[-1], str)
        self.data = False

    def in_data_form(self) -> EncodedBody:
        """This body with its parts in DATA's form (see DataForm); its fill then wants values in that form too
        (``encode_values(values, data=True)``). Every part begins a line: the body's first, and each one after a
        soft line break."""
        laid_out = copy.copy(self)
        laid_out.parts = [p if isinstance(p, str) else data_form(p) for p in self.parts]
        laid_out.data = True
        return laid_out

    def fill(self, values: dict[str, str], encoded: dict[str, bytes] | None = None) -> bytes:
        """The body with ``values`` in its slots; ``encoded``: the values already encoded (`encode_values`), for
        a message whose two bodies share them."""
        return b"".join(self.pieces(values, encoded))

    def pieces(self, values: dict[str, str], encoded: dict[str, bytes] | None = None) -> list[bytes]:
        """The filled body's pieces, for a message to join with its other parts at once (a copy of 27 KB less)."""
        if encoded is None:
            encoded = encode_values(values, self.data)
        out = [encoded[p] if isinstance(p, str) else p for p in self.parts]
        if self.ends_in_slot:
            last = _qp(values[str(self.parts[-1])])
            out[-1] = data_form(last) if self.data else last
        return out


def encode_values(values: dict[str, str], data: bool = False) -> dict[str, bytes]:
    """Slot values encoded as a body's slots take them: quoted-printable, between soft line breaks (with ``data``,
    in DATA's form: see DataForm)."""
    if data:
        return {name: data_form(_soft_end(_qp(value))) for name, value in values.items()}
    return {name: _soft_end(_qp(value)) for name, value in values.items()}


def _soft_end(encoded: bytes) -> bytes:
    """``encoded`` ending in a soft line break, its last line kept within 76 characters with the "="."""
    head, newline, last = encoded.rpartition(b"\n")
    return head + newline + _rebreak(last, 75) + b"=\n"


class MessageTemplate:
    """A multipart/alternative message (text first, HTML last, LF line ends) laid out once for every recipient of
    one rendering: per message only To, Date, Message-ID, List-Unsubscribe and the bodies' slots are filled in.
    Of the envelope it is made from, only what every copy shares is used (From, Subject, List-Id, Reply-To).
    Without ``html``, a single text/plain part: for readers who chose plain text. With ``data``, every copy is a
    DataForm: laid out for SMTP once, here, instead of converted copy by copy."""

    def __init__(self, envelope: Envelope, text: EncodedBody, html: EncodedBody | None, data: bool = False) -> None:
        self.text, self.html, self.bulk, self.data = text, html, envelope.bulk, data
        boundary = "=_digest_" + secrets.token_hex(12)
        self._head = f"From: {_from_header(envelope.mail_from)}\nTo: ".encode()
        self._after_to = f"\nSubject: {_encoded(envelope.subject)}\nDate: ".encode()
        after_id = "\n"
        if envelope.reply_to:
            after_id += f"Reply-To: {_from_header(envelope.reply_to)}\n"
        if envelope.bulk:
            after_id += (
                f"List-Id: {_encoded(envelope.list_name)} <{header_safe(envelope.list_id)}>\nList-Unsubscribe: <"
            )
        self._after_id = after_id.encode()
        tail = ">\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\nPrecedence: bulk\n" if envelope.bulk else ""
        tail += "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
        if envelope.language:
            tail += f"Content-Language: {envelope.language}\n"
        self._before_id = b"\nMessage-ID: "
        if html is None:
            self._before_text = tail.encode() + _body_head("text/plain")
            self._before_html, self._end = b"", b"\n"
        else:
            tail += f'Content-Type: multipart/alternative; boundary="{boundary}"\n'
            tail += "\nThis is a multipart message in MIME format."
            sep = f"\n--{boundary}\n".encode()
            self._before_text = tail.encode() + sep + _body_head("text/plain")
            self._before_html = sep + _body_head("text/html")
            self._end = f"\n--{boundary}--\n".encode()
        if data:
            # Header lines and boundaries never begin with a dot; the bodies' parts each begin a line.
            for name in ("_head", "_after_to", "_before_id", "_after_id", "_before_text", "_before_html", "_end"):
                setattr(self, name, data_form(getattr(self, name), line_start=False))
            self.text = text.in_data_form()
            self.html = html.in_data_form() if html is not None else None

    def fill(
        self,
        to: str,
        message_id: str,
        date: datetime,
        unsubscribe_url: str,
        values: dict[str, str],
        unsubscribe_mailto: str = "",
    ) -> bytes:
        parts = [
            self._head,
            # Punycode domain; a non-ASCII local part stays UTF-8 (RFC 6532), sent only where SMTPUTF8 is offered.
            header_safe(wire_address(to).address, limit=320).encode("utf-8"),
            self._after_to,
            _date(date.replace(microsecond=0)),
            self._before_id,
            header_safe(message_id).encode("utf-8"),
            self._after_id,
        ]
        if self.bulk:
            parts.append(header_safe(unsubscribe_url, limit=900).encode("utf-8"))
            if unsubscribe_mailto:  # second: one-click (RFC 8058) is the https URL's
                parts.append(f">, <mailto:{header_safe(unsubscribe_mailto, limit=320)}?subject=unsubscribe".encode())
        encoded = encode_values(values, self.data)
        parts.append(self._before_text)
        parts += self.text.pieces(values, encoded)
        if self.html is not None:
            parts.append(self._before_html)
            parts += self.html.pieces(values, encoded)
        parts.append(self._end)
        return DataForm(b"".join(parts)) if self.data else b"".join(parts)


@lru_cache(maxsize=4)
def _date(date: datetime) -> bytes:
    """The Date header's value (a send run stamps many messages within the same instant)."""
    return format_datetime(date).encode()


def _body_head(content_type: str) -> bytes:
    return f'Content-Type: {content_type}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'.encode()


def build_message(envelope: Envelope, text: str, html: str | None) -> bytes:
    """A multipart/alternative message (text first, HTML last), or a text/plain one without ``html``, as bytes with
    LF line ends."""
    template = MessageTemplate(envelope, EncodedBody(text, {}), EncodedBody(html, {}) if html is not None else None)
    return template.fill(
        envelope.to, envelope.message_id, envelope.date, envelope.unsubscribe_url, {}, envelope.unsubscribe_mailto
    )
