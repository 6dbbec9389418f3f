"""Signed links that act for a subscriber without a login: confirm, manage, unsubscribe, view a digest.

A token carries the subscriber's random key (never their id or address), is signed with ``secret_key`` under a
salt per purpose (a manage token does not unsubscribe, an unsubscribe token does not manage), and holds the
time it was made, so a purpose with a lifetime (confirm) can refuse old ones. itsdangerous does the signing
(HMAC-SHA256 over the payload and time, with a key derived per purpose).
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digest.errors import DigestError


class Purpose(StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    # The web view of one digest: the key and the digest's period.
    VIEW = "view"


class TokenError(DigestError):
    """A link that is not ours for this purpose (cut, changed, for another page) or has expired."""

    def __init__(self, message: str, hint: str = "", expired: bool = False) -> None:
        super().__init__(message, hint)
        self.expired = expired


@lru_cache(maxsize=32)
def _serializer(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    """One per secret and purpose. Its key is derived here, once (HMAC-SHA256 of the purpose under the secret),
    rather than by itsdangerous on every signature: a send run signs three links per message."""
    key = hmac.new(secret.encode(), f"digest.link.{purpose.value}".encode(), hashlib.sha256).digest()
    return URLSafeTimedSerializer(key, signer_kwargs={"key_derivation": "none", "digest_method": hashlib.sha256})


def make_token(secret: str, purpose: Purpose, key: str, period: str | None = None) -> str:
    """A token for the subscriber with this key (and, to view a digest, its period)."""
    payload: Any = key if period is None else [key, period]
    return str(_serializer(secret, purpose).dumps(payload))


def _payload(secret: str, token: str, purpose: Purpose, max_age: float | None) -> Any:
    try:
        return _serializer(secret, purpose).loads(token, max_age=None if max_age is None else int(max_age))
    except SignatureExpired as e:
        raise TokenError("this link has expired", "ask for a new one", expired=True) from e
    except BadSignature as e:
        raise TokenError("this link is not valid (it may have been cut or changed)") from e


def read_token(secret: str, token: str, purpose: Purpose, max_age: float | None = None) -> str:
    """The subscriber key in a token made for ``purpose``, at most ``max_age`` seconds old; TokenError if not."""
    value = _payload(secret, token, purpose, max_age)
    if not isinstance(value, str):
        raise TokenError("this link is not valid")
    return value


def read_view_token(secret: str, token: str) -> tuple[str, str]:
    """The subscriber key and the digest period in a view token; TokenError if it is not one."""
    value = _payload(secret, token, Purpose.VIEW, None)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise TokenError("this link is not valid")
    return value[0], value[1]
