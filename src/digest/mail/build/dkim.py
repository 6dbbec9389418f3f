"""DKIM signatures (RFC 6376) with dkimpy, when a key is configured.

relaxed/relaxed canonicalisation, rsa-sha256. The signed headers include From, To, Subject, Date, Message-ID,
the List-* headers (a forwarder that strips the unsubscribe headers breaks the signature) and the MIME
headers; From is signed twice, so no second From can be added without breaking it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from digest.config import Settings
from digest.errors import ConfigError
from digest.mail.build.mime import sender_address

SIGNED = (
    b"From",
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)


@lru_cache(maxsize=4)
def _key(path: str) -> bytes:
    return Path(path).read_bytes()


class Signer:
    def __init__(self, selector: str, domain: str, key: bytes) -> None:
        self.selector, self.domain, self.key = selector.encode(), domain.encode(), key

    def sign(self, message: bytes) -> bytes:
        """The message with CRLF line ends (what SMTP carries, and what was signed) and its DKIM-Signature."""
        import dkim  # here: most runs sign nothing, and dkimpy brings a DNS resolver with it

        wire = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        present = {line.split(b":", 1)[0].lower() for line in wire.split(b"\r\n\r\n", 1)[0].split(b"\r\n")}
        headers = [h for h in SIGNED if h.lower() in present or h == b"From"]
        try:
            signature = dkim.sign(
                wire,
                self.selector,
                self.domain,
                self.key,
                include_headers=headers,
                canonicalize=(b"relaxed", b"relaxed"),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as e:
            raise ConfigError(f"dkim_private_key: cannot sign with it: {e}", "give an RSA private key in PEM") from e
        return bytes(signature) + wire


def signer_for(settings: Settings) -> Signer | None:
    """The configured signer, or None when dkim_private_key is empty."""
    if not settings.dkim_private_key:
        return None
    domain = settings.dkim_domain or sender_address(settings.mail_from).rpartition("@")[2]
    return Signer(settings.dkim_selector, domain, _key(settings.dkim_private_key))
