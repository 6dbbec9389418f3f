"""`digest send --processes N`: sender processes side by side, forked while this one plans, reaped as they die;
their reports added up."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

from digest import clock, logs
from digest.config import Settings
from digest.mail.build.render import check_templates
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.mail.send.delivery import SendReport
from digest.mail.send.runs import ask_and_let_go, deliver_due
from digest.mail.send.transport import transport_for

events = logs.EventLog(__name__)
# Seconds between a sender's progress reports to the parent.
PROGRESS_EVERY = 0.5
# Set by SIGTERM or SIGINT once stop_on_signals() is in force: each sender finishes and records the message in
# flight, hands the rest of its batch back, and the command exits (nothing is left half-done: no claim waits for
# its timeout, no accepted message goes unrecorded).
stopping = threading.Event()
_children: list[int] = []
_installed_by: int | None = None


def stop_on_signals() -> None:
    """`digest send`: SIGTERM and SIGINT stop the run cleanly, as they stop the worker; forwarded to the senders."""
    global _installed_by
    _installed_by = os.getpid()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if not stopping.is_set():
        events("send.stopping", signal=signal.Signals(signum).name)
    stopping.set()
    if os.getpid() == _installed_by:  # the command itself (a forked sender inherits the handler, not the role)
        for pid in _children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _sender(
    settings: Settings, number: int, instant: str | None, parent: Engine | None, planned: Any, out: Any
) -> None:
    """One sender process of `digest send --processes N`, with its own engine and SMTP connection. It sends while
    the parent plans (what each planning batch commits is due at once) and stops once planning is over and
    nothing due is left; its report goes back through ``out``. If the parent dies (kill -9), the sender finishes
    the message in flight, hands the rest of its claims back and exits: nothing waits for a parent that is gone."""
    from digest.store import db

    parent_pid = os.getppid()
    report = SendReport()
    told = time.monotonic()
    gone = False

    def orphaned() -> bool:
        return os.getppid() != parent_pid  # re-parented: the command that forked this sender is gone

    def should_stop() -> bool:
        """Asked before each message: stop when told to (SIGTERM) or once orphaned; and every PROGRESS_EVERY, tell
        the parent how far this sender has come (so a sender killed later is not reported as having sent nothing)
        and look whether the parent is still there (a system call each message was a twentieth of a sender's
        time)."""
        nonlocal told, gone
        if time.monotonic() - told >= PROGRESS_EVERY:
            told = time.monotonic()
            try:
                out.send({"progress": report.as_dict()})
            except OSError:
                pass  # the parent is gone: orphaned() says so
            gone = orphaned()
        return gone or stopping.is_set()

    if instant:
        clock.set_fixed_now(clock.parse_instant(instant))
    if parent is not None:
        # Forked: the parent's engine, as SQLAlchemy's pooling guide has it, its pooled connections left to the
        # parent untouched (this process opens its own) and what it already knows kept: the dialect set up on its
        # first connection, the statements it has compiled.
        parent.dispose(close=False)
        engine = parent
    else:
        engine = db.make_engine(settings.database_url)
    factory = db.session_factory(engine)
    try:
        deliver_due(
            factory,
            settings,
            transport_for(settings, factory, start=number - 1),
            report,
            should_stop=should_stop,
            more_coming=lambda: not should_stop() and not planned.wait(0.05),
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
    configure_mappers()  # once, before the senders are forked, not in each on its first query
    fixed = clock.fixed_now()
    instant = fixed.isoformat() if fixed else None
    forked = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if forked else multiprocessing.get_context("spawn")
    parent = factory.kw.get("bind") if forked else None
    planned = context.Event()
    senders: dict[int, tuple[Any, Any]] = {}
    for n in range(1, processes + 1):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_sender, args=(settings, n, instant, parent, planned, send), daemon=True)
        process.start()
        _children.append(process.pid or 0)
        send.close()
        senders[n] = (process, receive)
    try:
        plan = plan_due(factory, PlanPolicy.from_settings(settings), clock.now())
    finally:
        planned.set()
    total = SendReport(due=plan.due, planned=plan.planned, empty=plan.empty)
    reports: dict[int, dict[str, Any]] = {}
    progress: dict[int, dict[str, Any]] = {}  # each sender's last word, for one that dies before its report
    crashed = False
    while senders:
        # A report (read at once: a long one must not fill the pipe while its sender waits to exit) or an exit.
        waiting = [r for n, (_, r) in senders.items() if n not in reports]
        ready = wait(waiting + [p.sentinel for p, _ in senders.values()])
        for n, (process, receive) in list(senders.items()):
            while receive in ready and n not in reports:
                said = _report(receive)
                if "progress" not in said:
                    reports[n] = said
                    break
                progress[n] = said["progress"]
                if not receive.poll():
                    break
            if process.sentinel in ready:
                process.join()
                while n not in reports:  # it has exited: what it said last, a report, or at once EOF
                    said = _report(receive)
                    if "progress" in said:
                        progress[n] = said["progress"]
                    else:
                        reports[n] = said
                del senders[n]
                part = reports[n]
                if "crashed" in part:
                    crashed = True
                    error = f"sender {n} of {processes} failed: {part['crashed']} (exit code {process.exitcode})"
                    events("sender.lost", logging.ERROR, sender=n, exit_code=process.exitcode, error=error)
                    # What it had sent by its last word counts; what it had not said is sent again or recorded.
                    reports[n] = progress.get(n, SendReport().as_dict()) | {"error": error, "hint": None}
    for n in sorted(reports):
        _add(total, reports[n])
    if crashed:
        # Whatever a dead sender held and no other sender took over (they had all finished) goes now.
        _add(total, deliver_due(factory, settings, transport_for(settings, factory), SendReport()).as_dict())
    if not stopping.is_set():
        ask_and_let_go(factory, settings, transport_for(settings, factory), total)
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
    for name in ("sent", "deferred", "failed", "bounced", "suppressed", "cancelled"):  # the sunset is the parent's
        setattr(total, name, getattr(total, name) + int(part[name]))
    total.rate_limited = total.rate_limited or bool(part["rate_limited"])
    total.errors += list(part["errors"])
    if part["error"] and total.error is None:
        total.error, total.hint = str(part["error"]), str(part["hint"])
