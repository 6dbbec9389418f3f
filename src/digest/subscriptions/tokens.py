"""Signed links that act for a subscriber without a login: confirm, manage, unsubscribe, view a digest.

A token carries the subscriber's random key (never their id or address), is signed with ``secret_key`` under a
salt per purpose (a manage token does not unsubscribe, an unsubscribe token does not manage), and holds the
time it was made, so a purpose with a lifetime (confirm) can refuse old ones. itsdangerous does the signing
(HMAC-SHA256 over the payload and time, with a key derived per purpose).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from enum import StrEnum
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from digest import clock
from digest.errors import DigestError


class Purpose(StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    # The web view of one digest: the key and the digest's period.
    VIEW = "view"
    # A personal feed: the subscriber's feed key (not their key), so a new feed link revokes only the feed.
    FEED = "feed"


class TokenError(DigestError):
    """A link that is not ours for this purpose (cut, changed, for another page) or has expired. ``reason`` says
    which, for the log (never the token itself)."""

    def __init__(self, message: str, hint: str = "", expired: bool = False, reason: str = "") -> None:
        super().__init__(message, hint)
        self.expired = expired
        self.reason = reason or ("expired" if expired else message)


# Up to this length, deflate's cheapest coding of bytes that repeat nothing (literals, a fixed or stored block:
# at least the length plus six) is never shorter; tests/test_tokens.py checks against itsdangerous itself.
_SHORT = 128


def _repeats(data: bytes) -> bool:
    """Whether any three bytes occur twice (the shortest match deflate uses)."""
    return len(set(zip(data, data[1:], data[2:], strict=False))) < len(data) - 2


class _ClockSigner(TimestampSigner):
    """itsdangerous's signer on digest's clock: DIGEST_NOW moves a link's age (and so its expiry) like every other
    time, so expiry can be tried and replayed like the rest."""

    def get_timestamp(self) -> int:
        return _timestamp()


def _timestamp() -> int:
    """Now, as a token's time (whole seconds on digest's clock)."""
    return int(clock.now().timestamp())


@lru_cache(maxsize=32)
def _serializer(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    """One per secret and purpose. Its key is derived here, once (HMAC-SHA256 of the purpose under the secret),
    rather than by itsdangerous on every signature."""
    return URLSafeTimedSerializer(
        _key(secret, purpose),
        signer=_ClockSigner,
        signer_kwargs={"key_derivation": "none", "digest_method": hashlib.sha256},
    )


@lru_cache(maxsize=32)
def _key(secret: str, purpose: Purpose) -> bytes:
    return hmac.new(secret.encode(), f"digest.link.{purpose.value}".encode(), hashlib.sha256).digest()


# itsdangerous's compact JSON (its _CompactJSON.dumps), made once.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def make_token(secret: str, purpose: Purpose, key: str, period: str | None = None) -> str:
    """A token for the subscriber with this key (and, to view a digest, its period): exactly the one
    itsdangerous's URLSafeTimedSerializer makes, made in a fraction of its time (a send run signs three links a
    message). itsdangerous tries zlib on every payload and keeps the compressed form only when it is shorter;
    starting zlib costs most of a signature, and a short payload in which no three bytes repeat holds nothing
    deflate could match, so it can never come out shorter: such payloads (a key, a key and a period) are signed
    here, the same steps without the attempt (payload, timestamp and signature, each URL-safe base64, joined by
    dots; the payload's part kept for the message's next link, the time's for the second); any other takes
    itsdangerous's own path. tests/test_tokens.py compares the two."""
    payload = _payload_part(key, period)
    if payload is None:
        return _serializer(secret, purpose).dumps(key if period is None else [key, period])
    value = payload + b"." + _time_part(_timestamp())
    return (value + b"." + base64_encode(hmac.digest(_key(secret, purpose), value, "sha256"))).decode()


@lru_cache(maxsize=8)
def _payload_part(key: str, period: str | None) -> bytes | None:
    """The payload as a token carries it (its compact JSON in URL-safe base64), or None when itsdangerous must
    make the token (a payload zlib might shorten)."""
    data = _JSON.encode(key if period is None else [key, period]).encode()
    if len(data) > _SHORT or _repeats(data):
        return None
    return base64_encode(data)


@lru_cache(maxsize=2)
def _time_part(timestamp: int) -> bytes:
    return base64_encode(int_to_bytes(timestamp))


def _payload(secret: str, token: str, purpose: Purpose, max_age: float | None) -> Any:
    try:
        return _serializer(secret, purpose).loads(token, max_age=None if max_age is None else int(max_age))
    except SignatureExpired as e:
        raise TokenError("this link has expired", "ask for a new one", expired=True) from e
    except BadSignature as e:
        raise TokenError(
            "this link is not valid (it may have been cut or changed)", reason=_why(secret, token, purpose)
        ) from e


def _why(secret: str, token: str, asked: Purpose) -> str:
    """Why a token did not verify for the purpose asked: made for another page, or not signed by us as it is."""
    for other in (p for p in Purpose if p != asked):
        try:
            _serializer(secret, other).loads(token)
        except BadSignature:
            continue
        return f"a link for another page ({other.value})"
    return "bad signature: altered, cut short, or signed with another secret_key"


def read_token(secret: str, token: str, purpose: Purpose, max_age: float | None = None) -> str:
    """The subscriber key in a token made for ``purpose``, at most ``max_age`` seconds old; TokenError if not."""
    value = _payload(secret, token, purpose, max_age)
    if not isinstance(value, str):
        raise TokenError("this link is not valid", reason="a link for another page (view)")
    return value


def read_view_token(secret: str, token: str) -> tuple[str, str]:
    """The subscriber key and the digest period in a view token; TokenError if it is not one."""
    value = _payload(secret, token, Purpose.VIEW, None)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise TokenError("this link is not valid", reason="not a digest's link")
    return value[0], value[1]
