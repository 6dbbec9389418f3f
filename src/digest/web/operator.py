"""For operators: Prometheus metrics at /metrics, and the operator page at /operator/ (read-only).

Both are off unless configured (404, as if they did not exist): metrics need ``metrics_token`` and answer only a
request that carries it as a Bearer token; the page needs ``operator_password_hash`` (argon2) and asks for the
password with HTTP Basic (any user name; over the reverse proxy's TLS). Wrong passwords are counted per client
in the store: past ``operator_tries_per_hour`` the page answers 429 until the hour is over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from digest import clock, logs
from digest.access import audit, webhooks
from digest.metrics import authorized, exposition
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import choice_of, schedule_of
from digest.store import figures, queries
from digest.store.db import transaction
from digest.subscriptions import subscribers as people
from digest.text import i18n
from digest.web import actions, limits
from digest.web.charts import bar_chart, buckets
from digest.web.site import PRIVATE, client, message_page, site, speak

blueprint = Blueprint("operator", __name__)
events = logs.EventLog("digest.web")
_hasher = PasswordHasher()


@blueprint.get("/metrics")
def metrics() -> Response:
    """The Prometheus exposition: this process's metrics and the store's figures. 404 without the token."""
    if not authorized(request.headers.get("Authorization"), site().settings.metrics_token):
        abort(404)
    body, content_type = exposition(site().metrics, request.headers.get("Accept"))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def _challenge() -> Response:
    response = Response("The operator page needs its password.\n", status=401, content_type="text/plain")
    response.headers["WWW-Authenticate"] = 'Basic realm="digest operator", charset="UTF-8"'
    response.headers.update(PRIVATE)
    return response


def _refusal() -> Response | Any | None:
    """None when the request carries the operator password; else the answer (404, 401 or 429).

    A try is counted before the password is checked, in one statement that returns the count: parallel wrong
    tries cannot all pass a check made before any of them is counted (the hash takes a tenth of a second). A right
    password gives its try back."""
    settings = site().settings
    if not settings.operator_password_hash:
        abort(404)
    credentials = request.authorization
    if credentials is None or credentials.type.lower() != "basic":
        return _challenge()
    client = request.remote_addr or ""
    with transaction(site().sessions) as session:
        allowed = limits.operator_try(session, settings, client, clock.now())
    if not allowed:
        events("operator.limited")
        return message_page(429, "Too many tries", "Too many wrong passwords from here: try again in an hour.")
    try:
        _hasher.verify(settings.operator_password_hash, credentials.password or "")
    except (VerificationError, InvalidHashError):
        events("operator.refused", route="/operator/")
        return _challenge()
    with transaction(site().sessions) as session:
        limits.operator_right(session, settings, client, clock.now())
    return None


@blueprint.get("/operator/")
def page() -> Any:
    speak(i18n.DEFAULT)  # for operators: English, as the command line
    refused = _refusal()
    if refused is not None:
        return refused
    now = clock.now()
    with site().engine.connect() as connection:
        found = figures.figures(connection, now)
        jobs = figures.job_table(connection)
        sources = figures.sources_table(connection)
        hours = buckets(now, 7 * 24, hourly=True)
        days = buckets(now, 30, hourly=False)
        quarter = buckets(now, 90, hourly=False)
        sent = figures.sent_per_hour(connection, now - timedelta(days=7))
        bounces = figures.bounces_per_day(connection, now - timedelta(days=30))
        failed = figures.failed_per_day(connection, now - timedelta(days=30))
        people = figures.joins_and_leaves(connection, now - timedelta(days=90))
        reasons = figures.by_reason(connection, now - timedelta(days=30))
        waiting = figures.waiting_to_reconfirm(connection)
    with site().sessions() as session:
        themes = queries.themes(session)
        endpoints = webhooks.listed(session)
        trail = audit.recent(session, 20)
    charts = [
        bar_chart("sent", "Digests sent per hour, last 7 days (UTC)", hours, {"sent": sent}),
        bar_chart(
            "bounces",
            "Bounces and failed digests per day, last 30 days (UTC)",
            days,
            {"hard bounces": bounces["hard"], "soft bounces": bounces["soft"], "failed digests": failed},
        ),
        bar_chart(
            "people",
            "Subscribers who joined, left or were erased per day, last 90 days (UTC)",
            quarter,
            {"joined": people["joined"], "left": people["left"], "erased": people["erased"]},
        ),
    ]
    page = render_template(
        "operator.html",
        figures=found,
        jobs=jobs,
        sources=sources,
        themes=themes,
        charts=charts,
        reasons=reasons,
        endpoints=endpoints,
        trail=trail,
        waiting=waiting,
        reconfirm_wait=timedelta(days=site().settings.reconfirm_days),
        soft_limit=site().settings.soft_bounce_limit,
        soft_days=site().settings.soft_bounce_days,
        now=now,
        switcher=[],  # the operator page stays English, as the command line: no language to switch to
    )
    return page, 200, PRIVATE


# Acting on one subscriber -----------------------------------------------------------------------------------------


def _guarded() -> Any:
    speak(i18n.DEFAULT)
    return _refusal()


@blueprint.get("/operator/subscribers")
def search() -> Any:
    """Subscribers whose address starts with ?q= (the first fifty)."""
    refused = _guarded()
    if refused is not None:
        return refused
    wanted = request.args.get("q", "").strip()[:320]
    with site().sessions() as session:
        found = queries.subscriber_page(session, wanted.lower(), None, None, None, 50) if wanted else []
    return render_template("operator_people.html", q=wanted, found=found, person=None, switcher=[]), 200, PRIVATE


@blueprint.get("/operator/subscribers/<email>")
def person(email: str) -> Any:
    """One subscriber: themes, schedule, status, ledger, bounces, complaint; and what can be done."""
    refused = _guarded()
    if refused is not None:
        return refused
    with site().sessions() as session:
        summary = queries.subscribers(session, email=email.lower())
        if not summary:
            return message_page(404, "Not found", f"No subscriber {email}.")
        subscriber = people.get_subscriber(session, email)
        record = queries.ledger(session, subscriber)
        bounces = queries.bounce_page(session, subscriber.email, None, None, 20)
    schedule = schedule_of(choice_of(summary[0]), defaults_from(site().settings)).describe()
    page = render_template(
        "operator_people.html",
        q="",
        found=[],
        person=summary[0],
        schedule=schedule,
        record=record,
        bounces=bounces,
        actions=actions.ACTIONS,
        switcher=[],
    )
    return page, 200, PRIVATE


@blueprint.post("/operator/subscribers/<email>/<action>")
def act(email: str, action: str) -> Any:
    """An action, after a confirmation step: the first POST shows what it will do, the second (confirmed) does it."""
    refused = _guarded()
    if refused is not None:
        return refused
    if action not in actions.ACTIONS:
        abort(404)
    reason = request.form.get("reason", "").strip()[:500]
    if request.form.get("confirmed") != "yes":
        page = render_template("operator_confirm.html", email=email, action=action, reason=reason, switcher=[])
        return page, 200, PRIVATE
    try:
        address = actions.act(
            site().sessions, site().settings, email, action, reason, "operator", client(), clock.now()
        )
    except actions.StateConflict as e:
        flash(str(e), "error")
        return redirect(url_for("operator.person", email=email), 303)
    flash(f"{action.replace('-', ' ')}: done for {email}", "ok")
    if address == "(erased)":
        return redirect(url_for("operator.search"), 303)
    return redirect(url_for("operator.person", email=address), 303)
