"""Sending: planned digests -> rendered messages -> delivery (digest.mail.delivery), and the plan-then-send run."""

from __future__ import annotations

import logging
import multiprocessing
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs
from digest.config import Settings
from digest.mail.bounces import return_path
from digest.mail.compose import DigestContent
from digest.mail.delivery import Deliverer, DeliveryPolicy, Pending, SendReport
from digest.mail.message import EncodedBody, Envelope, MessageTemplate, build_message
from digest.mail.plan import PlanPolicy, plan_due
from digest.mail.render import Links, RenderedDigest, check_templates, render_digest
from digest.mail.signing import signer_for
from digest.mail.transport import Transport, transport_for
from digest.subscriptions.tokens import Purpose, make_token

events = logs.EventLog(__name__)


def links_for(settings: Settings, key: str, period: str | None = None) -> Links:
    """The links of one recipient's digest: signed for their key (and the digest's period, to view it)."""
    base, secret = settings.base_url, settings.secret_key
    return Links(
        base_url=base,
        unsubscribe=f"{base}/unsubscribe/{make_token(secret, Purpose.UNSUBSCRIBE, key)}",
        manage=f"{base}/manage/{make_token(secret, Purpose.MANAGE, key)}",
        view=f"{base}/digests/{make_token(secret, Purpose.VIEW, key, period)}" if period else "",
    )


def render_for(settings: Settings, content: DigestContent, links: Links, subject: str | None = None) -> RenderedDigest:
    templates = Path(settings.templates_dir) if settings.templates_dir else None
    return render_digest(content, links, templates, subject, settings.postal_address)


@dataclass(frozen=True)
class Addressed:
    """Who a digest goes to (their address and key), under which fixed Message-ID and subject (None: derive it from
    the content); ``period`` names the digest for its web view (None: a preview, which has none)."""

    key: str
    email: str
    message_id: str
    subject: str | None = None
    period: str | None = None


def digest_message(
    settings: Settings, content: DigestContent, to: Addressed, now: datetime
) -> tuple[RenderedDigest, bytes]:
    """Render a digest and assemble its message; the unsubscribe token is signed once for both."""
    links = links_for(settings, to.key, to.period)
    rendered = render_for(settings, content, links, to.subject)
    envelope = Envelope(
        mail_from=settings.mail_from,
        to=to.email,
        subject=rendered.subject,
        message_id=to.message_id,
        date=now,
        list_id=settings.list_id,
        unsubscribe_url=links.unsubscribe,
        reply_to=settings.reply_to,
    )
    message = build_message(envelope, rendered.text, rendered.html)
    signer = signer_for(settings)
    return rendered, signer.sign(message) if signer else message


# What stands for the per-recipient links in a rendering shared by everyone with the same digest: tokens that
# HTML escaping, CSS inlining and text wrapping leave alone, replaced in each recipient's copy.
_SLOTS = {"unsubscribe": "@@digest-unsubscribe@@", "manage": "@@digest-manage@@", "view": "@@digest-view@@"}


class MessageFactory:
    """Builds each recipient's message from one rendering per distinct content (render once): only the address,
    Message-ID, date and the signed links differ per message. The renderings kept are bounded."""

    def __init__(self, settings: Settings, keep: int = 64) -> None:
        self.settings = settings
        self.keep = keep
        self.signer = signer_for(settings)
        self._templates: OrderedDict[tuple[str, str], MessageTemplate] = OrderedDict()

    def _template(self, content_hash: str, subject: str, body: str) -> MessageTemplate:
        """The message of one distinct content, rendered, encoded and laid out once."""
        key = (content_hash, subject)
        found = self._templates.get(key)
        if found is None:
            placeholders = Links(self.settings.base_url, **_SLOTS)
            rendered = render_for(self.settings, DigestContent.from_json(body), placeholders, subject)
            shared = Envelope(
                mail_from=self.settings.mail_from,
                to="",  # each message's own: To, Message-ID, Date and List-Unsubscribe are filled in per copy
                subject=rendered.subject,
                message_id="",
                date=clock.now(),
                list_id=self.settings.list_id,
                unsubscribe_url="",
                reply_to=self.settings.reply_to,
            )
            found = MessageTemplate(shared, EncodedBody(rendered.text, _SLOTS), EncodedBody(rendered.html, _SLOTS))
            self._templates[key] = found
            if len(self._templates) > self.keep:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return found

    def build(self, pending: Pending, body: str, now: datetime) -> bytes:
        """The message of a claimed digest, with its fixed Message-ID and its recipient's links."""
        template = self._template(pending.content_hash, pending.subject, body)
        links = links_for(self.settings, pending.key, pending.period)
        values = {"unsubscribe": links.unsubscribe, "manage": links.manage, "view": links.view}
        message = template.fill(pending.email, pending.message_id, now, links.unsubscribe, values)
        return self.signer.sign(message) if self.signer else message


def deliver_due(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    report: SendReport,
    should_stop: Callable[[], bool] = lambda: False,
    more_coming: Callable[[], bool] | None = None,
) -> SendReport:
    """Send every digest that is due (planned, deferred and due again, or abandoned by a dead process); with
    ``more_coming``, also what is planned meanwhile, for as long as it says more is coming."""

    policy = DeliveryPolicy.from_settings(settings)
    check_templates(settings.templates_dir or None)  # a broken template stops the run before any claim
    try:
        build = MessageFactory(settings).build
        Deliverer(
            factory,
            transport,
            policy,
            build,
            partial(return_path, settings),
            report,
            settings.batch_size,
            should_stop,
            more_coming,
        ).run()
    finally:
        transport.close()
    return report


def plan_and_send(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    should_stop: Callable[[], bool] = lambda: False,
) -> SendReport:
    """Plan a digest for every subscriber who is due, then deliver everything due."""
    plan = plan_due(factory, PlanPolicy.from_settings(settings), clock.now())
    report = SendReport(due=plan.due, planned=plan.planned, empty=plan.empty)
    return deliver_due(factory, settings, transport, report, should_stop)


def _sender(settings: Settings, instant: str | None, parent: Engine | None, planned: Any, out: Any) -> None:
    """One sender process of `digest send --processes N`, with its own engine and SMTP connection. It sends while
    the parent plans (what each planning batch commits is due at once) and stops once planning is over and
    nothing due is left; its report goes back through ``out``. If the parent dies (kill -9), the sender finishes
    the message in flight, hands the rest of its claims back and exits: nothing waits for a parent that is gone."""
    import os

    from digest.store import db

    parent_pid = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != parent_pid  # re-parented: the command that forked this sender is gone

    if parent is not None:
        parent.dispose(close=False)  # forked: the parent's pooled connections stay the parent's, untouched
    if instant:
        clock.set_fixed_now(clock.parse_instant(instant))
    engine = db.make_engine(settings.database_url)
    try:
        report = deliver_due(
            db.session_factory(engine),
            settings,
            transport_for(settings),
            SendReport(),
            should_stop=orphaned,
            more_coming=lambda: not orphaned() and not planned.wait(0.05),
        )
        if orphaned():
            events("sender.orphaned", logging.WARNING, sent=report.sent)
        else:
            out.send(report.as_dict())
    except Exception as e:  # logged with its traceback, named in the parent's report; the other senders go on
        events("sender.crashed", logging.ERROR, exc_info=True, error=f"{type(e).__name__}: {e}")
        try:
            out.send({"crashed": f"{type(e).__name__}: {e}"})
        except OSError:
            pass  # the parent is gone: the log line above is all there is to say
        raise SystemExit(1) from e
    finally:
        engine.dispose()
        out.close()


def send_in_processes(factory: sessionmaker[Session], settings: Settings, processes: int) -> SendReport:
    """Plan, and deliver with ``processes`` sender processes side by side, which start sending what planning has
    committed while it goes on (each claims its own batches; a digest is sent by one of them only); their
    reports added up.

    A sender that dies is reaped as soon as it does (whatever its place among the others), so the others see its
    claims as abandoned and take them over; if none is left to, this process sends them before it returns.
    The senders are forked where the platform can (they start at once, with everything imported: no new
    interpreter each), and started afresh elsewhere."""
    from multiprocessing.connection import wait

    check_templates(settings.templates_dir or None)  # a broken template stops the run before any sender starts
    fixed = clock.fixed_now()
    instant = fixed.isoformat() if fixed else None
    forked = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if forked else multiprocessing.get_context("spawn")
    parent = factory.kw.get("bind") if forked else None
    planned = context.Event()
    senders: dict[int, tuple[Any, Any]] = {}
    for n in range(1, processes + 1):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_sender, args=(settings, instant, parent, planned, send), daemon=True)
        process.start()
        send.close()
        senders[n] = (process, receive)
    try:
        plan = plan_due(factory, PlanPolicy.from_settings(settings), clock.now())
    finally:
        planned.set()
    total = SendReport(due=plan.due, planned=plan.planned, empty=plan.empty)
    reports: dict[int, dict[str, Any]] = {}
    crashed = False
    while senders:
        # A report (read at once: a long one must not fill the pipe while its sender waits to exit) or an exit.
        waiting = [r for n, (_, r) in senders.items() if n not in reports]
        ready = wait(waiting + [p.sentinel for p, _ in senders.values()])
        for n, (process, receive) in list(senders.items()):
            if receive in ready and n not in reports:
                reports[n] = _report(receive)
            if process.sentinel in ready:
                process.join()
                if n not in reports:
                    reports[n] = _report(receive) if receive.poll() else {"crashed": "it ended without a report"}
                del senders[n]
                part = reports[n]
                if "crashed" in part:
                    crashed = True
                    error = f"sender {n} of {processes} failed: {part['crashed']} (exit code {process.exitcode})"
                    events("sender.lost", logging.ERROR, sender=n, exit_code=process.exitcode, error=error)
                    reports[n] = cast(dict[str, Any], SendReport(error=error).as_dict())
    for n in sorted(reports):
        _add(total, reports[n])
    if crashed:
        # Whatever a dead sender held and no other sender took over (they had all finished) goes now.
        _add(total, deliver_due(factory, settings, transport_for(settings), SendReport()).as_dict())
    return total


def _report(receive: Any) -> dict[str, Any]:
    """What a sender said through its pipe, or that it said nothing (killed, or died before it could)."""
    try:
        said: dict[str, Any] = receive.recv()
    except EOFError:
        return {"crashed": "it ended without a report"}
    return said


def _add(total: SendReport, part: dict[str, Any]) -> None:
    """Add one sender's report to the run's."""
    for name in ("sent", "deferred", "failed", "bounced", "suppressed", "cancelled"):
        setattr(total, name, getattr(total, name) + int(part[name]))
    total.rate_limited = total.rate_limited or bool(part["rate_limited"])
    total.errors += list(part["errors"])
    if part["error"] and total.error is None:
        total.error, total.hint = str(part["error"]), str(part["hint"])
