"""Signed links: make_token skips itsdangerous's zlib attempt for short payloads, and must still make exactly the
tokens itsdangerous makes (links already in people's mailboxes are read by itsdangerous)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import string
import zlib
from datetime import UTC, datetime

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from digest import clock
from digest.subscriptions.tokens import _SHORT, Purpose, _repeats, make_token, read_token, read_view_token

SECRET = "token-test-secret-0123456789abcdef"


def stock(purpose: Purpose) -> URLSafeTimedSerializer:
    """itsdangerous as documented, with the key digest derives for the purpose."""
    key = hmac.new(SECRET.encode(), f"digest.link.{purpose.value}".encode(), hashlib.sha256).digest()
    return URLSafeTimedSerializer(key, signer_kwargs={"key_derivation": "none", "digest_method": hashlib.sha256})


def payloads() -> list[tuple[str, str | None]]:
    rng = random.Random(2026)
    alphabet = string.ascii_letters + string.digits + "-_"
    cases: list[tuple[str, str | None]] = [(secrets.token_urlsafe(16), None) for _ in range(200)]
    cases += [(secrets.token_urlsafe(16), f"2026-{m:02d}-{d:02d}") for m in range(1, 13) for d in (1, 15, 28)]
    cases += [(secrets.token_urlsafe(16), f"2026-W{w:02d}T{h:02d}:00") for w in range(1, 53) for h in (0, 9)]
    # Repetitive and long payloads: these take itsdangerous's own path (and some of them compress).
    cases += [("a" * n, None) for n in (3, 10, 60, 125, 126, 127, 200, 400)]
    cases += [("".join(rng.choice("ab") for _ in range(n)), "2026-11-16") for n in (20, 90, 130)]
    cases += [("".join(rng.choice(alphabet) for _ in range(n)), None) for n in range(1, 160)]
    return cases


@pytest.fixture
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sides sign at the same second (else a second boundary between them would change the tokens): digest on
    its own clock, stock itsdangerous on the system's."""
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_795_000_000)
    clock.set_fixed_now(datetime.fromtimestamp(1_795_000_000, UTC))


@pytest.mark.usefixtures("fixed_time")
@pytest.mark.parametrize("purpose", list(Purpose))
def test_tokens_are_exactly_the_ones_itsdangerous_makes(purpose: Purpose) -> None:
    serializer = stock(purpose)
    for key, period in payloads():
        payload = key if period is None else [key, period]
        assert make_token(SECRET, purpose, key, period) == serializer.dumps(payload), payload


def test_short_payloads_without_repeats_never_compress() -> None:
    """The reason the shortcut is exact: where it skips zlib, zlib would not have been kept."""
    checked = 0
    for key, period in payloads():
        data = json.dumps(key if period is None else [key, period], separators=(",", ":")).encode()
        if len(data) <= _SHORT and not _repeats(data):
            checked += 1
            assert len(zlib.compress(data)) >= len(data) - 1, data
    assert checked > 300
    # A payload that does compress is never taken for one that does not.
    assert _repeats(json.dumps("a" * 60).encode())


def test_tokens_read_back_and_refuse_another_purpose() -> None:
    key = secrets.token_urlsafe(16)
    assert read_token(SECRET, make_token(SECRET, Purpose.MANAGE, key), Purpose.MANAGE) == key
    assert read_view_token(SECRET, make_token(SECRET, Purpose.VIEW, key, "2026-11-16")) == (key, "2026-11-16")
    with pytest.raises(Exception, match="not valid"):
        read_token(SECRET, make_token(SECRET, Purpose.MANAGE, key), Purpose.UNSUBSCRIBE)
