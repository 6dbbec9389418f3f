"""Pages for people: subscribe (double opt-in), confirm, manage, download or erase their data, leave in one
click, and the web view of a digest they were sent.

Every page that acts for someone is reached by a signed link (digest.subscriptions.tokens) and changes nothing
on GET: link scanners and prefetchers open links, people press buttons.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from digest import clock, logs, metrics
from digest.errors import NotFoundError, SubscriberError
from digest.mail.build.recipient import links_for, render_for
from digest.mail.plan.compose import DigestContent
from digest.mail.plan.planner import first_digest_at
from digest.mail.send.notices import send_confirmation, send_manage_link, send_welcome_if_it_can, welcome_for
from digest.mail.send.transport import transport_for
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import WEEKDAYS, Choice, ScheduleError, choice_of, parse_choice, schedule_of
from digest.schedules.zones import aliases, local, unknown_zone, zone_groups
from digest.store import feeds, queries
from digest.store.db import first_writer_wins, transaction
from digest.store.states import Frequency, MailFormat, SubscriberStatus
from digest.subscriptions import subscribers as people
from digest.subscriptions.tokens import Purpose, make_token, read_token, read_view_token
from digest.text import i18n
from digest.text.i18n import _
from digest.text.languages import autonym, parse_tags
from digest.web import limits
from digest.web.pages import HOME_THEMES, form_context, overview, themes_page
from digest.web.site import PRIVATE, message_page, site, speak

blueprint = Blueprint("people", __name__)
events = logs.EventLog("digest.web")


def _key(token: str, purpose: Purpose, max_age: float | None = None) -> str:
    """The subscriber key of a link for ``purpose``; a refusal (TokenError: 404 or 410, logged with its reason by
    digest.web.errors) when it is not one. Nothing is done for a refused link."""
    return read_token(site().settings.secret_key, token, purpose, max_age)


# Subscribe and confirm ---------------------------------------------------------------------------------------


@blueprint.post("/subscribe")
def subscribe() -> Any:
    """Send a confirmation (or, to a confirmed address, a link to manage): the answer is the same either way."""
    settings = site().settings
    now = clock.now()
    # The client's limit comes before any work: a refused form must not cost more than an accepted one.
    with transaction(site().sessions) as session:
        client_ok = limits.allow(session, settings, "client", request.remote_addr or "", now)
    if not client_ok:
        return message_page(
            429, _("Too many requests"), _("This connection has sent many requests. Try again in an hour.")
        )
    email = request.form.get("email", "").strip()
    chosen = request.form.getlist("theme")
    errors: list[str] = []
    try:
        address = people.normalize_email(email)
    except SubscriberError:
        errors.append(_("Enter an email address such as name@example.org."))
    if not chosen:
        errors.append(_("Choose at least one theme."))
    try:
        language = i18n.supported(request.form.get("language") or i18n.current())
    except i18n.UnknownLanguage:
        language = i18n.current()
        errors.append(_("Language of your mails: choose English, Français or Español."))
    try:
        choice = _chosen_schedule()
    except ScheduleError as e:
        choice = None
        errors.append(str(e))
    if errors:
        return _form_again(email, chosen, errors, language, choice)

    with transaction(site().sessions) as session:
        address_ok = limits.allow(session, settings, "address", address, now)
    if not address_ok:
        events("web.subscribe.limited")
        return redirect(url_for("people.check_inbox"), 303)
    try:
        answer = first_writer_wins(
            site().sessions,
            lambda session: people.request_subscription(session, address, chosen, now, choice, language),
        )
    except SubscriberError as e:
        return _form_again(email, chosen, [str(e)], language)
    metrics.SUBSCRIPTIONS.labels("web").inc()
    # A mail server out of reach: 503 with Retry-After (digest.web.errors); the request stands, asking again works.
    # Their mail in their language: the one just chosen, or a confirmed subscriber's own.
    in_language = answer.language or settings.default_language
    if answer.mail == "confirm":
        send_confirmation(settings, transport_for(settings), address, answer.key, answer.themes, in_language)
    else:
        send_manage_link(settings, transport_for(settings), address, answer.key, in_language)
    return redirect(url_for("people.check_inbox"), 303)


def _chosen_schedule() -> Choice:
    """The schedule the subscribe form asks for: how often, the day and hour if unfolded, and the time zone the
    browser said (a name it guessed that is not a zone to choose is passed over, never an error: the operator's
    zone is used, and the manage page changes it)."""
    frequency = request.form.get("frequency", "")
    day = request.form.get("monthday") if frequency == Frequency.MONTHLY else request.form.get("weekday")
    zone = request.form.get("timezone", "").strip()[:64]
    zone = aliases().get(zone, zone)
    return parse_choice(
        frequency,
        None if frequency == Frequency.DAILY else day,
        request.form.get("hour"),
        None if unknown_zone(zone) else zone,
    )


def _form_again(
    email: str, chosen: list[str], errors: list[str], language: str, choice: Choice | None = None
) -> tuple[str, int]:
    """The form as it was sent and what to fix: the themes chosen (those that exist), or the first page of themes
    when none was; never more than a page of the home page, whatever the form carried."""
    wanted = set(chosen)
    themes = overview()
    offered = [t for t in themes if t.slug in wanted][:HOME_THEMES] or themes_page(themes, 1).themes
    page = render_template(
        "home.html",
        listed=None,
        themes=offered,
        chosen=wanted,
        email=email,
        errors=errors,
        language=language,
        **form_context(choice),
    )
    return page, 400


@blueprint.get("/subscribe/sent")
def check_inbox() -> str:
    return render_template(
        "message.html",
        title=_("Check your inbox"),
        message=_(
            "If the address can receive mail, a message is on its way: open the link in it to confirm. "
            "Nothing is sent before you confirm."
        ),
    )


def _confirm_key(token: str) -> str:
    return _key(token, Purpose.CONFIRM, site().settings.confirm_hours * 3600)


@blueprint.get("/confirm/<token>")
def confirm_page(token: str) -> Any:
    key = _confirm_key(token)
    with site().sessions() as session:
        found = queries.subscribers(session, key=key)
    if not found:
        abort(404, _("This link belongs to no subscription any more. Subscribe again on the home page."))
    speak(found[0].language)
    return render_template("confirm.html", subscriber=found[0], token=token), 200, PRIVATE


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> Any:
    key = _confirm_key(token)
    now = clock.now()
    with transaction(site().sessions) as session:
        subscriber = people.subscriber_by_key(session, key)
        speak(subscriber.language)
        if subscriber.status != SubscriberStatus.CONFIRMED:
            people.confirm(session, subscriber, now, site().settings.welcome_backfill_days)
            metrics.CONFIRMATIONS.inc()
        # What the page promises is what planning will do: their first slot after they confirmed (at once, for a
        # welcome backfill), in their own zone.
        schedule = schedule_of(choice_of(subscriber), defaults_from(site().settings))
        first = first_digest_at(schedule, subscriber, now)
        welcome = welcome_for(site().settings, subscriber, now) if people.to_welcome(session, subscriber, now) else None
    if welcome is not None:
        send_welcome_if_it_can(site().settings, welcome)
    manage_url = url_for("people.manage", token=make_token(site().settings.secret_key, Purpose.MANAGE, key))
    page = render_template(
        "confirmed.html", manage_url=manage_url, schedule=schedule.describe(), first=first, zone=schedule.zone.key
    )
    return page, 200, PRIVATE


# Manage ------------------------------------------------------------------------------------------------------


@blueprint.get("/manage/<token>")
def manage(token: str) -> Any:
    key = _key(token, Purpose.MANAGE)
    settings = site().settings
    with site().sessions() as session:
        found = queries.subscribers(session, key=key)
        if not found:
            abort(404, _("This link belongs to no subscription any more. Subscribe again on the home page."))
        themes = queries.themes(session)
        feed_key = feeds.feed_key(session, key)
        known = feeds.practice_languages(session)
    subscriber = found[0]
    speak(subscriber.language)
    schedule = schedule_of(choice_of(subscriber), defaults_from(settings))
    zone = schedule.zone
    today = clock.now().astimezone(zone).date()
    # Every date and time in the reader's own timezone; a pause reads back as the day they chose.
    paused = local(subscriber.paused_until, zone)
    return (
        render_template(
            "manage.html",
            token=token,
            subscriber=subscriber,
            themes=themes,
            schedule=schedule,
            weekdays=list(zip(WEEKDAYS, i18n.weekday_names(), strict=True)),
            language=subscriber.language or settings.default_language,
            zone_groups=zone_groups(),
            current_zone=aliases().get(zone.key, zone.key),
            next_due=local(subscriber.next_due_at, zone),
            paused_until=paused.date() if paused else None,
            tomorrow=today + timedelta(days=1),
            latest=today + people.LONGEST_PAUSE,
            feed_url=_feed_url(feed_key) if feed_key else None,
            # Every language practices here are written in, and any the subscriber chose that none is in yet.
            languages=[
                (tag, autonym(tag)) for tag in sorted(set(known) | set(parse_tags(subscriber.practice_languages)))
            ],
            chosen_languages=parse_tags(subscriber.practice_languages),
        ),
        200,
        PRIVATE,
    )


def _feed_url(feed_key: str) -> str:
    token = make_token(site().settings.secret_key, Purpose.FEED, feed_key)
    return f"{site().settings.base_url}{url_for('feeds.personal', token=token)}"


@blueprint.post("/manage/<token>")
def manage_change(token: str) -> BaseResponse:
    """One change per form: themes, schedule, pause, resume, or leave; then back to the page with what happened."""
    key = _key(token, Purpose.MANAGE)
    settings = site().settings
    action = request.form.get("action", "")
    now = clock.now()
    try:
        with transaction(site().sessions) as session:
            subscriber = people.subscriber_by_key(session, key)
            speak(subscriber.language)  # what is refused, in the language they read
            if action == "language":
                people.set_language(subscriber, request.form.get("language", ""))
                speak(subscriber.language)  # what is done, in the language they chose
            if subscriber.status == SubscriberStatus.UNSUBSCRIBED and action != "leave":
                raise SubscriberError(_("You have left: subscribe again on the home page to come back."))
            defaults = defaults_from(settings)
            # Any change but leaving answers "do you still want these?" (digest.mail.send.sunset).
            answered = action != "leave" and people.still_wanted(subscriber, now)
            if action == "still":
                message = _("Thank you: your digests keep coming.")
            elif action == "themes":
                people.set_themes(session, subscriber, request.form.getlist("theme"), now)
                message = _("Your themes are saved.")
            elif action == "schedule":
                frequency = request.form.get("frequency", "")
                day = request.form.get("monthday") if frequency == Frequency.MONTHLY else request.form.get("weekday")
                day = None if frequency == Frequency.DAILY else day
                choice = parse_choice(frequency, day, request.form.get("hour"), request.form.get("timezone"))
                people.set_schedule(session, subscriber, choice, defaults, now)
                message = _("Your schedule is saved.")
            elif action == "pause":
                until = _date(request.form.get("until", ""))
                people.pause(session, subscriber, until, defaults, now)
                message = _("Paused until %(day)s.", day=i18n.day(until))
            elif action == "resume":
                people.resume(session, subscriber, defaults, now)
                message = _("Digests come again from your next scheduled time.")
            elif action == "delivery":
                feed_only = request.form.get("delivery") == "feed"
                people.set_feed_only(session, subscriber, feed_only, defaults, now)
                message = (
                    _("No more mail: follow your themes with your feed link.")
                    if feed_only
                    else _("Digests come by mail again, from your next scheduled time.")
                )
            elif action == "languages":
                people.set_practice_languages(subscriber, request.form.getlist("language"))
                message = (
                    _("Only practices in the languages you chose (and those whose language is unknown) will come.")
                    if subscriber.practice_languages
                    else _("Practices in every language will come.")
                )
            elif action == "language":
                message = _("Your mails and these pages will be in English from now on.")
            elif action == "format":
                people.set_format(subscriber, request.form.get("format", ""))
                message = (
                    _("Your digests come as plain text from now on.")
                    if subscriber.format == MailFormat.TEXT
                    else _("Your digests come with their formatting from now on.")
                )
            elif action == "feed-link":
                people.renew_feed_key(subscriber)
                message = _("Your feed has a new link; the old one no longer works. Give the new one to your reader.")
            elif action == "leave":
                people.unsubscribe_subscriber(session, subscriber, now)
                metrics.UNSUBSCRIBES.labels("page").inc()
                message = _("You have left: no more digests will be sent.")
            else:
                abort(400, _("Unknown change."))
            if answered:
                events("reconfirm.answered", subscriber_id=subscriber.id)
    except (SubscriberError, ScheduleError) as e:
        flash(str(e), "error")
        return redirect(url_for("people.manage", token=token), 303)
    flash(message, "ok")
    return redirect(url_for("people.manage", token=token), 303)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise ScheduleError(_("Choose the day digests should start again (YYYY-MM-DD).")) from e


@blueprint.get("/manage/<token>/data.json")
def export(token: str) -> Response:
    key = _key(token, Purpose.MANAGE)
    with site().sessions() as session:
        data = queries.personal_data(session, key)
    body = json.dumps(data, indent=2, ensure_ascii=False)
    response = Response(body, mimetype="application/json", headers=PRIVATE)
    response.headers["Content-Disposition"] = 'attachment; filename="my-digest-data.json"'
    return response


@blueprint.post("/manage/<token>/erase")
def erase(token: str) -> Any:
    key = _key(token, Purpose.MANAGE)
    with transaction(site().sessions) as session:
        subscriber = people.subscriber_by_key(session, key)
        speak(subscriber.language)  # before anything is said: the notice below is in their language too
        if request.form.get("confirm") != "yes":
            flash(_("Tick the box to confirm that everything about you should be erased."), "error")
            return redirect(url_for("people.manage", token=token), 303)
        limits.forget(session, site().settings, "address", subscriber.email)
        people.erase(session, subscriber, clock.now())
    metrics.ERASURES.inc()
    events("web.erased")
    message = _("Your address and everything about you are deleted. Links in mails you were sent no longer work.")
    return render_template("message.html", title=_("Erased"), message=message), 200, PRIVATE


# Leave in one click (RFC 8058) -------------------------------------------------------------------------------


def masked(address: str) -> str:
    """An address as a page shows it to whoever holds the link: enough to tell which, not enough to harvest
    (`b…@example.net`)."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}…@{domain}"


def _unsubscribe_form(token: str, key: str, status: int = 200, problem: str = "") -> Any:
    with site().sessions() as session:
        found = queries.subscribers(session, key=key)
    address = masked(found[0].email) if found else None
    speak(found[0].language if found else None)
    page = render_template("unsubscribe.html", token=token, address=address, problem=problem)
    return page, status, PRIVATE


@blueprint.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Any:
    """A page with a button: opening the link changes nothing."""
    return _unsubscribe_form(token, _key(token, Purpose.UNSUBSCRIBE))


@blueprint.post("/unsubscribe/<token>")
def one_click(token: str) -> Any:
    """RFC 8058 one-click: the body is List-Unsubscribe=One-Click; no cookie, no CSRF token, no redirect."""
    key = _key(token, Purpose.UNSUBSCRIBE)
    if request.form.get("List-Unsubscribe") != "One-Click":
        problem = _(
            "Nothing was changed: the request did not say List-Unsubscribe=One-Click. Press the button to leave."
        )
        return _unsubscribe_form(token, key, 400, problem)
    with transaction(site().sessions) as session:
        try:
            subscriber = people.subscriber_by_key(session, key)
        except NotFoundError:
            # Erased already: there is nobody left to mail, which is what was asked.
            return message_page(200, _("Unsubscribed"), _("This address gets no more digests."))
        speak(subscriber.language)
        if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
            people.unsubscribe_subscriber(session, subscriber, clock.now())
            # The page's button says so; a mail client's RFC 8058 POST carries List-Unsubscribe=One-Click only.
            metrics.UNSUBSCRIBES.labels("page" if request.form.get("via") == "page" else "one_click").inc()
    events("web.unsubscribed")
    manage_url = url_for("people.manage", token=make_token(site().settings.secret_key, Purpose.MANAGE, key))
    return render_template("unsubscribed.html", manage_url=manage_url), 200, PRIVATE


# The web view of a digest -----------------------------------------------------------------------------------


@blueprint.get("/digests/<token>")
def view(token: str) -> Any:
    settings = site().settings
    key, period = read_view_token(settings.secret_key, token)
    with site().sessions() as session:
        archived = queries.archived_digest(session, key, period)
    # Content that cannot be read back is a bug: a 500, logged with its traceback by the route (DigestFlask).
    content = DigestContent.from_json(archived.content)
    html = render_for(settings, content, links_for(settings, key, period), archived.subject).html
    headers = dict(PRIVATE)
    # The mail's HTML carries inline styles (mail clients need them) and nothing else to run.
    headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'none'; base-uri 'none'"
    )
    return html, 200, headers
