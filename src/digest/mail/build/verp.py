"""VERP: every digest leaves with an envelope sender of its own, ``local+<token>@domain`` (the token is the
digest's id and an HMAC of it under ``secret_key``, lower-case so that an MTA that folds case keeps it), so a
bounce names the digest it is about, and only with our HMAC. Its List-Unsubscribe mailto: is made the same way,
``local+u<token>@domain`` under another HMAC: a mail to it unsubscribes that digest's reader, and no one else."""

from __future__ import annotations

import hashlib
import hmac
import re

from digest.config import Settings
from digest.mail.build.mime import sender_address

_TOKEN = re.compile(r"\+([0-9a-f]{1,12})-([0-9a-f]{12})@", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(r"\+u([0-9a-f]{1,12})-([0-9a-f]{12})@", re.IGNORECASE)


def _mac(settings: Settings, digest_id: int, purpose: str = "verp") -> str:
    return hmac.digest(settings.secret_key.encode(), f"{purpose}:{digest_id}".encode(), hashlib.sha256).hex()[:12]


def _address(settings: Settings, token: str) -> str:
    base = settings.bounce_address or sender_address(settings.mail_from)
    local, _, domain = base.rpartition("@")
    return f"{local}+{token}@{domain}"


def return_path(settings: Settings, digest_id: int) -> str:
    """The envelope sender of one digest: bounce_address (else mail_from) with +<id>-<mac> after its local part."""
    return _address(settings, f"{digest_id:x}-{_mac(settings, digest_id)}")


def unsubscribe_address(settings: Settings, digest_id: int) -> str:
    """Where a mail unsubscribes the reader of this digest: bounce_address with +u<id>-<mac> (another HMAC)."""
    return _address(settings, f"u{digest_id:x}-{_mac(settings, digest_id, 'unsubscribe')}")


def digest_of(settings: Settings, address: str) -> int | None:
    """The digest id a VERP address names, when its HMAC is ours."""
    return _named(settings, _TOKEN, address, "verp")


def unsubscribing(settings: Settings, address: str) -> int | None:
    """The digest id an unsubscribe address names, when its HMAC is ours."""
    return _named(settings, _UNSUBSCRIBE, address, "unsubscribe")


def _named(settings: Settings, pattern: re.Pattern[str], address: str, purpose: str) -> int | None:
    match = pattern.search(address)
    if not match:
        return None
    digest_id = int(match.group(1), 16)
    return digest_id if hmac.compare_digest(match.group(2).lower(), _mac(settings, digest_id, purpose)) else None
