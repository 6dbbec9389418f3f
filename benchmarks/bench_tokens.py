"""Signing a message's links: digest's short-payload path against stock itsdangerous, and what the difference is
worth at the README's measured send rate (SQLite, one sender: 1,680 messages/s on 2026-12-01). A message carries
three signed links (unsubscribe, manage, view), so the per-message cost is three signatures.

    .venv/bin/python benchmarks/bench_tokens.py
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import timeit

from itsdangerous import URLSafeTimedSerializer

from digest.subscriptions.tokens import Purpose, make_token

SECRET = "bench-secret-0123456789abcdef"
RATE = 1680  # messages per second, README (bench_throughput.py, SQLite, one sender)


def main() -> None:
    key = secrets.token_urlsafe(16)
    derived = hmac.new(SECRET.encode(), b"digest.link.manage", hashlib.sha256).digest()
    stock = URLSafeTimedSerializer(derived, signer_kwargs={"key_derivation": "none", "digest_method": hashlib.sha256})
    assert make_token(SECRET, Purpose.MANAGE, key).split(".")[0] == stock.dumps(key).split(".")[0]
    n = 20_000
    ours = min(timeit.repeat(lambda: make_token(SECRET, Purpose.MANAGE, key), number=n, repeat=5)) / n
    theirs = min(timeit.repeat(lambda: stock.dumps(key), number=n, repeat=5)) / n
    budget = 1 / RATE
    saved = 3 * (theirs - ours)
    print(f"per token: digest {ours * 1e6:.1f} µs, itsdangerous {theirs * 1e6:.1f} µs ({theirs / ours:.2f}x)")
    print(
        f"per message (3 links): {3 * ours * 1e6:.0f} µs vs {3 * theirs * 1e6:.0f} µs; at {RATE}/s a message has "
        f"{budget * 1e6:.0f} µs: the short path saves {saved / budget:.1%} of it"
    )


if __name__ == "__main__":
    main()
