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
from flask import Blueprint, Response, abort, render_template, request

from digest import clock, logs
from digest.access import webhooks
from digest.metrics import authorized, exposition
from digest.store import figures, queries
from digest.store.db import transaction
from digest.text import i18n
from digest.web import limits
from digest.web.charts import bar_chart, buckets
from digest.web.site import PRIVATE, message_page, site, speak

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
        waiting=waiting,
        reconfirm_wait=timedelta(days=site().settings.reconfirm_days),
        soft_limit=site().settings.soft_bounce_limit,
        soft_days=site().settings.soft_bounce_days,
        now=now,
        switcher=[],  # the operator page stays English, as the command line: no language to switch to
    )
    return page, 200, PRIVATE
