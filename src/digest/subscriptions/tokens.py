"""Opaque signed tokens for links that act on a subscriber without a login (unsubscribe, manage)."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

from digest.errors import DigestError

UNSUBSCRIBE = "unsubscribe"


def make_token(secret: str, subscriber_id: int, purpose: str = UNSUBSCRIBE) -> str:
    """A token naming the subscriber, signed for one purpose; it does not expire (old mails keep working)."""
    return URLSafeSerializer(secret, salt=f"digest.{purpose}").dumps(subscriber_id)


def read_token(secret: str, token: str, purpose: str = UNSUBSCRIBE) -> int:
    """The subscriber id in a token; DigestError when it was not signed by us for this purpose."""
    try:
        value = URLSafeSerializer(secret, salt=f"digest.{purpose}").loads(token)
    except BadSignature as e:
        raise DigestError("this link is not valid (it may have been cut or changed)") from e
    if not isinstance(value, int):
        raise DigestError("this link is not valid")
    return value
