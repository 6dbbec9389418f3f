"""One send run: plan what is due, then deliver everything ready through one transport (the worker's jobs and
`digest send` / `digest run` call these)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.mail.build.recipient import MessageFactory
from digest.mail.build.render import check_templates
from digest.mail.build.verp import return_path
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.mail.send.delivery import Deliverer, DeliveryPolicy, SendReport
from digest.mail.send.sunset import sunset
from digest.mail.send.transport import Transport


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
    deliver_due(factory, settings, transport, report, should_stop)
    if not should_stop():
        ask_and_let_go(factory, settings, transport, report)
    return report


def ask_and_let_go(
    factory: sessionmaker[Session], settings: Settings, transport: Transport, report: SendReport
) -> None:
    """After a run's deliveries: those whose digests keep bouncing softly are asked "do you still want these?", and
    those who never answered leave (digest.mail.send.sunset); counted in the run's report. Not while the mail
    server is away (the asks would not go)."""
    if not report.ok:
        return
    done = sunset(factory, settings, transport, clock.now())
    report.reconfirm_asked += len(done.asked)
    report.stopped_receiving += len(done.left)
    report.errors += [
        f'{a}: the "do you still want these?" mail could not go; asked again next run' for a in done.not_reached
    ]
