"""Reading what comes back: `digest bounces explain` over a Maildir of a thousand messages (the corpus of
tests/fixtures/replies/, every format in it, repeated), messages per second, against the reference measured in the
same run: Python's email parser alone on the same bytes (what any reader pays before reading a word).

    .venv/bin/python benchmarks/bench_replies.py
"""

from __future__ import annotations

import email
import mailbox
import tempfile
import time
from email import policy
from pathlib import Path

from click.testing import CliRunner

from digest.cli import cli

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "replies"
COUNT = 1000


def main() -> None:
    samples = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    messages = [samples[i % len(samples)] for i in range(COUNT)]
    with tempfile.TemporaryDirectory() as scratch:
        box = mailbox.Maildir(Path(scratch) / "box", create=True)
        for message in messages:
            box.add(message)
        box.close()
        best_parse = best_explain = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for message in messages:
                email.message_from_bytes(message, policy=policy.default)
            best_parse = min(best_parse, time.perf_counter() - started)
            started = time.perf_counter()
            result = CliRunner().invoke(cli, ["bounces", "explain", str(Path(scratch) / "box"), "--json"])
            best_explain = min(best_explain, time.perf_counter() - started)
            assert result.exit_code == 0, result.output
        lines = result.output.count("\n")
    print(f"{COUNT} messages ({len(samples)} formats), {lines} readings")
    print(f"  email parser alone:        {COUNT / best_parse:8,.0f} messages/s")
    ratio = best_explain / best_parse
    print(f"  digest bounces explain:    {COUNT / best_explain:8,.0f} messages/s ({ratio:.2f}x the parse)")


if __name__ == "__main__":
    main()
