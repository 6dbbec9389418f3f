"""The REST API's tokens: ``dgt_`` and 43 random URL-safe characters, printed once at creation; only their SHA-256 is
stored (a token is 256 random bits: a fast hash is enough, nothing to guess). A read token reads; a write token also
writes. A revoked token is refused like one never made."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.errors import DigestError, NotFoundError
from digest.store.models import ApiToken

PREFIX = "dgt_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


@dataclass(frozen=True)
class TokenInfo:
    name: str
    can_write: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(session: Session, name: str, can_write: bool, now: datetime) -> str:
    """A new token named ``name`` (letters, digits, . _ -; unique); the token itself, which is not kept."""
    if not _NAME.fullmatch(name):
        raise DigestError(
            f"{name!r} is not a token name", "use up to 80 letters, digits, dots, dashes or underscores: crm-sync"
        )
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise DigestError(f"a token named {name!r} exists already", "choose another name, or revoke that one first")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, hash=digest_of(token), can_write=can_write, created_at=now))
    return token


def revoke(session: Session, name: str, now: datetime) -> None:
    found = session.scalar(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)))
    if found is None:
        raise NotFoundError(f"no live token named {name!r}", "see `digest api token list`")
    found.revoked_at = now
    # Its name stays (the audit log names it); it can never be used again, and the name is free no more.


def listed(session: Session) -> list[TokenInfo]:
    rows = session.scalars(select(ApiToken).order_by(ApiToken.name))
    return [TokenInfo(t.name, t.can_write, t.created_at, t.last_used_at, t.revoked_at) for t in rows]


def holder(session: Session, presented: str, now: datetime) -> TokenInfo | None:
    """The live token presented (its use noted, at most once a minute), or None."""
    if not presented.startswith(PREFIX) or len(presented) > 100:
        return None
    wanted = digest_of(presented)
    found = session.scalar(select(ApiToken).where(ApiToken.hash == wanted, ApiToken.revoked_at.is_(None)))
    if found is None or not hmac.compare_digest(found.hash, wanted):
        return None
    if found.last_used_at is None or (now - found.last_used_at).total_seconds() > 60:
        session.execute(update(ApiToken).where(ApiToken.id == found.id).values(last_used_at=now))
    return TokenInfo(found.name, found.can_write, found.created_at, found.last_used_at, found.revoked_at)
