"""Planning and sending cost as subscribers grow: time and peak memory at N and 4N subscribers.

Prints figures, asserts nothing. The reference is the same run at N: cost should grow ~4x (linear in
subscribers, not subscribers x practices) and peak memory should stay roughly flat (batches).
Also compares hand-built MIME against EmailMessage(policy=SMTP) for the same rendered digest.

    .venv/bin/python benchmarks/bench_send.py [N]
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.build.mime import Envelope, build_message
from digest.mail.build.recipient import links_for, render_for
from digest.mail.plan.compose import DigestContent
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.mail.send.delivery import SendReport
from digest.mail.send.runs import deliver_due
from digest.mail.send.transport import MaildirTransport, transport_for
from digest.store import db
from digest.store.models import Subscriber, Subscription, Theme

LISTING = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def setup(tmp: Path, subscribers: int) -> tuple[Settings, sessionmaker[Session]]:
    settings = Settings(database_url=f"sqlite:///{tmp / 'b.db'}", outbox_dir=str(tmp / "outbox"), batch_size=500)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    clock.set_fixed_now(datetime(2026, 11, 9, 10, tzinfo=UTC))
    ingest_sources(sessions, [SourceConfig(str(LISTING / "listing-goal6.txt"))], clock.now())
    with sessions() as s, s.begin():
        themes = [t.id for t in s.scalars(select(Theme))]
        s.execute(
            insert(Subscriber),
            [
                {"email": f"u{i}@example.org", "status": "confirmed", "created_at": clock.now()}
                for i in range(subscribers)
            ],
        )
        ids = list(s.scalars(select(Subscriber.id)))
        s.execute(
            insert(Subscription),
            [{"subscriber_id": i, "theme_id": themes[0], "created_at": clock.now(), "cursor": 0} for i in ids],
        )
    clock.set_fixed_now(datetime(2026, 11, 11, 10, tzinfo=UTC))
    for name in ("listing-water.txt", "listing-water-week2.txt"):
        ingest_sources(sessions, [SourceConfig(str(LISTING / name))], clock.now())
    return settings, sessions


def measure(subscribers: int) -> tuple[float, float, float]:
    """(plan seconds, send seconds) from an untraced pass, peak MiB from a second pass under tracemalloc."""
    plan, send, _ = one_pass(subscribers, trace=False)
    return plan, send, one_pass(subscribers, trace=True)[2]


def one_pass(subscribers: int, trace: bool) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as d:
        settings, sessions = setup(Path(d), subscribers)
        clock.set_fixed_now(datetime(2026, 11, 16, 9, tzinfo=UTC))
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        plan = plan_due(sessions, PlanPolicy.from_settings(settings), clock.now())
        t1 = time.perf_counter()
        report = SendReport()
        deliver_due(sessions, settings, MaildirTransport(settings.outbox_dir), report)
        t2 = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
        tracemalloc.stop()
        assert plan.planned == subscribers and report.sent == subscribers
        return t1 - t0, t2 - t1, peak


class Sink:
    """An SMTP server that accepts everything and keeps nothing."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def smtp_send(subscribers: int) -> float:
    """Seconds to deliver `subscribers` planned digests to a real SMTP server on loopback (aiosmtpd)."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            settings, sessions = setup(Path(d), subscribers)
            settings = replace(settings, smtp_url=f"smtp://127.0.0.1:{port}", secret_key="benchmark-secret-0123456789")
            clock.set_fixed_now(datetime(2026, 11, 16, 9, tzinfo=UTC))
            plan_due(sessions, PlanPolicy.from_settings(settings), clock.now())
            report = SendReport()
            t0 = time.perf_counter()
            deliver_due(sessions, settings, transport_for(settings), report)
            elapsed = time.perf_counter() - t0
            assert report.sent == subscribers, report
            return elapsed
    finally:
        controller.stop()


def mime_comparison(repeat: int = 2000) -> tuple[float, float]:
    settings = Settings()
    content = DigestContent.from_json(
        '{"period":"2026-11-16","sections":[{"name":"Water","slug":"water","practices":['
        + ",".join(
            f'{{"id":{i},"uid":"u{i}","title":"Practice {i} in Zürich","summary":"{"Text. " * 60}",'
            f'"url":null,"submitted_by":"Ana","added_at":"2026-11-11T10:00:00+00:00"}}'
            for i in range(5)
        )
        + "]}]}"
    )
    rendered = render_for(settings, content, links_for(settings, "bench-key", "2026-W01"))
    envelope = Envelope(
        settings.mail_from, "u@example.org", rendered.subject, "<x@y>", clock.now(), settings.list_id, "https://d/u/t"
    )
    t0 = time.perf_counter()
    for _ in range(repeat):
        build_message(envelope, rendered.text, rendered.html)
    t1 = time.perf_counter()
    for _ in range(repeat):
        msg = EmailMessage(policy=SMTP)
        msg["From"], msg["To"], msg["Subject"] = settings.mail_from, "u@example.org", rendered.subject
        msg["List-Unsubscribe"] = "<https://d/u/t>"
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        msg.as_bytes()
    t2 = time.perf_counter()
    return (t1 - t0) / repeat * 1000, (t2 - t1) / repeat * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    base = measure(n)
    big = measure(4 * n)
    print(f"subscribers       plan s   send s   peak MiB   (reference: N={n})")
    for label, (plan, send, peak) in ((f"N   = {n}", base), (f"4N  = {4 * n}", big)):
        print(f"{label:16} {plan:7.2f}  {send:7.2f}  {peak:8.1f}")
    print(
        f"ratio 4N/N       {big[0] / base[0]:7.2f}x {big[1] / base[1]:7.2f}x {big[2] / base[2]:8.2f}x"
        "   (linear: ~4x time; flat memory: ~1x)"
    )
    small, large = smtp_send(n), smtp_send(4 * n)
    print(
        f"SMTP on loopback: {small:.2f} s for {n} ({small / n * 1000:.2f} ms/message), {large:.2f} s for {4 * n}"
        f" ({large / (4 * n) * 1000:.2f} ms/message; {large / small:.2f}x for 4x)"
    )
    own, stdlib = mime_comparison()
    print(f"MIME per message: hand-built {own:.3f} ms, EmailMessage(policy=SMTP) {stdlib:.3f} ms ({stdlib / own:.1f}x)")


if __name__ == "__main__":
    main()
