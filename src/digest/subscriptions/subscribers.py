"""Subscribers and their theme subscriptions: subscribe, confirm, unsubscribe, import, list."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from digest.errors import NotFoundError, SubscriberError
from digest.schedules.slots import Choice, Defaults, ScheduleError, choice_of, schedule_of
from digest.store import outbox
from digest.store.models import (
    Digest,
    Erasure,
    Membership,
    Resend,
    Subscriber,
    Subscription,
    Theme,
    new_key,
)
from digest.store.states import WAITING, DigestStatus, Frequency, MailFormat, SubscriberStatus
from digest.text.clean import slugify
from digest.text.i18n import UnknownLanguage, _, supported
from digest.text.languages import language_tag


def _told(session: Session, event: str, subscriber: Subscriber, now: datetime, **more: object) -> None:
    """A subscriber.* event into the webhooks' outbox, on the session's transaction (digest.store.outbox), as the
    subscriber stands once the session's changes are flushed."""
    session.flush()
    outbox.tell_of_subscriber(session.connection(), event, subscriber.id, now, **more)


def normalize_email(address: str) -> str:
    """The address as stored: validated, trimmed, lower-case; SubscriberError when it is not an address."""
    try:
        # strict: RFC 5321's limits too (64 octets before the @), which a receiving server would refuse anyway.
        valid = validate_email(address.strip(), check_deliverability=False, strict=True)
    except EmailNotValidError as e:
        raise SubscriberError(
            _("%(address)r is not a valid email address: %(reason)s", address=address.strip(), reason=e)
        ) from e
    return valid.normalized.lower()


def membership_cursor(session: Session, now: datetime, backfill_days: int) -> int:
    """The store-order position a new subscription starts after: now, or backfill_days ago."""
    query = select(func.max(Membership.id))
    if backfill_days:
        query = query.where(Membership.added_at <= now - timedelta(days=backfill_days))
    return session.scalar(query) or 0


def resolve_themes(session: Session, names: Iterable[str]) -> list[Theme]:
    """Themes by slug or name; SubscriberError naming the unknown ones and, for each, the theme it nearly is."""
    wanted = {slugify(n): n for n in names if n.strip()}
    found = {t.slug: t for t in session.scalars(select(Theme).where(Theme.slug.in_(wanted)))}
    missing = [name for slug, name in wanted.items() if slug not in found]
    if missing:
        raise SubscriberError(
            _("unknown theme(s): %(themes)s", themes=", ".join(missing)), _near_themes(session, missing)
        )
    return list(found.values())


def _near_themes(session: Session, missing: list[str]) -> str:
    """The hint for unknown theme names: the themes they nearly are, else how to list the themes there are."""
    known = {slug: name for slug, name in session.execute(select(Theme.slug, Theme.name))}
    if not known:
        return "no theme yet: ingest sources first (digest ingest)"
    near = [
        f"{name!r} -> {known[found[0]]!r}"
        for name in missing
        if (found := difflib.get_close_matches(slugify(name), known, n=1, cutoff=0.75))
    ]
    listed = "digest themes lists the themes there are"
    return f"did you mean {', '.join(near)}? ({listed})" if near else listed


def ensure_subscriber(
    session: Session, email: str, theme_names: Iterable[str], now: datetime, after: int | None = None
) -> bool:
    """Create a confirmed subscriber of these themes unless the address is known in any state; True if created.

    For subscribers fixed in the config: one who unsubscribed stays unsubscribed. Their themes must exist (a
    typo must not create a public theme): SubscriberError names the unknown ones and what they nearly are.
    ``after``: the membership they start after (a run seeds them once its ingest made the themes, from before it).
    """
    address = normalize_email(email)
    if session.scalar(select(Subscriber.id).where(Subscriber.email == address)) is not None:
        return False
    themes = resolve_themes(session, theme_names)
    subscriber = subscribe(session, address, [t.slug for t in themes], now, confirmed=True)
    if after is not None:
        for subscription in subscriber.subscriptions:
            subscription.cursor = min(subscription.cursor, after)
    subscriber.next_due_at = now  # fixed recipients (a demo) get what is waiting in this run
    return True


def get_subscriber(session: Session, email: str) -> Subscriber:
    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.email == normalize_email(email))
        .options(selectinload(Subscriber.subscriptions))
    )
    if subscriber is None:
        raise NotFoundError(f"no subscriber {email!r}", "see `digest subscribers list`")
    return subscriber


def subscriber_by_key(session: Session, key: str) -> Subscriber:
    """The subscriber a signed link names; NotFoundError when there is none (erased, or a link from before)."""
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.key == key).options(selectinload(Subscriber.subscriptions))
    )
    if subscriber is None:
        raise NotFoundError(_("this link belongs to no subscription any more"), _("Subscribe again on the home page."))
    return subscriber


def confirm(session: Session, subscriber: Subscriber, now: datetime, backfill_days: int = 0) -> None:
    """Confirm: from now on new practices count for them; nothing older (but the configured backfill). Their first
    digest comes at their first slot from now (placed by the next planning run, digest.mail.plan.planner.first_due); a
    welcome backfill, which has something to say at once, comes at once."""
    cursor = membership_cursor(session, now, backfill_days)
    subscriber.status, subscriber.confirmed_at, subscriber.unsubscribed_at = SubscriberStatus.CONFIRMED, now, None
    subscriber.bounces, subscriber.suppressed_at = 0, None
    subscriber.next_due_at = now if backfill_days else None
    for subscription in subscriber.subscriptions:
        subscription.cursor = cursor
    _told(session, "subscriber.confirmed", subscriber, now)


def subscribe(
    session: Session,
    email: str,
    theme_names: Iterable[str],
    now: datetime,
    confirmed: bool = False,
    backfill_days: int = 0,
    choice: Choice | None = None,
    language: str | None = None,
) -> Subscriber:
    """Subscribe to themes (adding to existing ones); pending until confirmed unless ``confirmed``.

    ``choice`` is their schedule (what they left out follows the operator's defaults); ``language`` that of their
    mails and pages (None: as it was, else the operator's default_language). Their first due time is
    placed by the next planning run (see digest.mail.plan.planner.first_due).
    """
    address = normalize_email(email)
    themes = resolve_themes(session, theme_names)
    if not themes:
        raise SubscriberError(f"{address}: no theme given", "name at least one theme with --theme")
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.email == address).options(selectinload(Subscriber.subscriptions))
    )
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(email=address, status=SubscriberStatus.PENDING, created_at=now)
        session.add(subscriber)
    elif subscriber.status in GONE:
        start_over(subscriber)
    if choice is not None:
        apply_choice(subscriber, choice)
    if language is not None:
        set_language(subscriber, language)
    cursor = membership_cursor(session, now, backfill_days)
    have = {s.theme_id for s in subscriber.subscriptions}
    for theme in themes:
        if theme.id not in have:
            subscriber.subscriptions.append(Subscription(theme_id=theme.id, created_at=now, cursor=cursor))
    session.flush()
    if created:
        _told(session, "subscriber.created", subscriber, now)
    if confirmed and subscriber.status != SubscriberStatus.CONFIRMED:
        confirm(session, subscriber, now, backfill_days)
    return subscriber


# Who comes back as someone new: the links and the feed they had stay dead.
GONE = frozenset({SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.SUPPRESSED})


def start_over(subscriber: Subscriber) -> None:
    """Someone who left (or was suppressed) subscribes again: pending, no themes, and new keys, so no link or feed
    URL from before (revoked by leaving) works again. Their ledger stays: nothing already sent is sent again."""
    subscriber.status = SubscriberStatus.PENDING
    subscriber.subscriptions.clear()
    subscriber.key, subscriber.feed_key = new_key(), new_key()
    subscriber.left_reason = subscriber.reconfirm_asked_at = None


def apply_choice(subscriber: Subscriber, choice: Choice) -> None:
    """Set what the choice names; a field it leaves out keeps its value."""
    for name in ("frequency", "day", "hour", "timezone"):
        value = getattr(choice, name)
        if value is not None:
            setattr(subscriber, name, value)
    if choice.frequency == Frequency.DAILY:
        subscriber.day = None
    elif (
        choice.frequency == Frequency.WEEKLY
        and choice.day is None
        and subscriber.day is not None
        and subscriber.day > 6
    ):
        subscriber.day = None  # a monthly day is no weekday: back to the default weekday


def set_schedule(session: Session, subscriber: Subscriber, choice: Choice, defaults: Defaults, now: datetime) -> None:
    """Change when digests come; from their next slot under the new schedule (or after a pause). Nothing new is
    lost or sent twice: what a digest holds comes from the cursors and the ledger, not from the schedule. A pause
    keeps the day they chose, in their new timezone."""
    before = ZoneInfo(subscriber.timezone or defaults.timezone)
    apply_choice(subscriber, choice)
    after = ZoneInfo(subscriber.timezone or defaults.timezone)
    if subscriber.paused_until is not None and after != before:
        day = subscriber.paused_until.astimezone(before).date()
        subscriber.paused_until = datetime.combine(day, time(0), tzinfo=after).astimezone(UTC)
    if choice.frequency == Frequency.MONTHLY or subscriber.frequency == Frequency.MONTHLY:
        if subscriber.day is None or not 1 <= subscriber.day <= 31:
            raise ScheduleError("a monthly digest needs a day of the month (1-31): give --day")
    _place(subscriber, defaults, now)


# The longest pause: a year ahead (for longer, leaving and coming back is the honest choice). It also keeps the
# first slot after the pause inside the calendar (a pause to 9999-12-31 would overflow it).
LONGEST_PAUSE = timedelta(days=366)


def pause(session: Session, subscriber: Subscriber, until: date, defaults: Defaults, now: datetime) -> None:
    """Send nothing before ``until`` (their local date); the first digest after carries what came meanwhile."""
    zone = ZoneInfo(subscriber.timezone or defaults.timezone)
    today = now.astimezone(zone).date()
    if until <= today:
        raise ScheduleError(
            _("pause until %(day)s: that day has begun already", day=until.isoformat()), _("Give a later date.")
        )
    latest = today + LONGEST_PAUSE
    if until > latest:
        raise ScheduleError(
            _(
                "pause until %(day)s: a pause lasts a year at most (until %(latest)s)",
                day=until.isoformat(),
                latest=latest.isoformat(),
            ),
            _("Give an earlier date, or unsubscribe and subscribe again later."),
        )
    resume_at = datetime.combine(until, time(0), tzinfo=zone).astimezone(UTC)
    subscriber.paused_until = resume_at
    _place(subscriber, defaults, now)


def resume(session: Session, subscriber: Subscriber, defaults: Defaults, now: datetime) -> None:
    """End a pause now: the next digest comes at their next slot, with everything new since the last one."""
    subscriber.paused_until = None
    _place(subscriber, defaults, now)


def _place(subscriber: Subscriber, defaults: Defaults, now: datetime) -> None:
    """Their next due time: the first slot after now, or, while paused, the first at or after the pause's end."""
    schedule = schedule_of(choice_of(subscriber), defaults)
    if subscriber.paused_until is not None and subscriber.paused_until > now:
        subscriber.next_due_at = schedule.next_after(subscriber.paused_until - timedelta(microseconds=1))
    else:
        subscriber.next_due_at = schedule.next_after(now)


def set_feed_only(session: Session, subscriber: Subscriber, feed_only: bool, defaults: Defaults, now: datetime) -> None:
    """Follow the themes in a feed reader only (no mail: digests not yet sent are cancelled), or by mail again:
    then the first digest holds only what is new from now (the feed showed them the rest)."""
    if subscriber.feed_only == feed_only:
        return
    subscriber.feed_only = feed_only
    if feed_only:
        session.execute(
            update(Digest)
            .where(Digest.subscriber_id == subscriber.id, Digest.status.in_(WAITING))
            .values(status=DigestStatus.CANCELLED)
        )
        return
    cursor = membership_cursor(session, now, 0)
    for subscription in subscriber.subscriptions:
        subscription.cursor = max(subscription.cursor, cursor)
    _place(subscriber, defaults, now)


def set_practice_languages(subscriber: Subscriber, tags: Iterable[str]) -> None:
    """Only practices in these languages (and those of unknown language) in their digests and personal feed;
    none: every language. SubscriberError naming the field for a value that is not a language tag."""
    chosen = []
    for value in tags:
        tag = language_tag(value)
        if tag is None:
            raise SubscriberError(
                _("languages: %(value)r is not a language tag", value=value),
                _("Give tags such as es, fr or pt-BR (none: every language)."),
            )
        chosen.append(tag)
    subscriber.practice_languages = " ".join(sorted(set(chosen))) or None


def to_welcome(session: Session, subscriber: Subscriber, now: datetime) -> bool:
    """Whether their welcome mail is to go now: True once per subscriber, ever (a conditional UPDATE, so two
    confirmations at once welcome once). Marked before it is sent: at most once, never twice."""
    marked = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber.id, Subscriber.welcomed_at.is_(None))
        .values(welcomed_at=now)
        .returning(Subscriber.id)
        .execution_options(synchronize_session=False)
    ).first()
    return marked is not None


def still_wanted(subscriber: Subscriber, now: datetime) -> bool:
    """They answered "do you still want these?" (pressed yes, or changed anything on their page): not asked any more,
    and the soft bounces before now forgiven (digest.store.bounces.to_reconfirm). True when they had been asked."""
    asked = subscriber.reconfirm_asked_at is not None
    if asked:
        subscriber.reconfirm_asked_at, subscriber.reconfirmed_at = None, now
    return asked


def suppress(session: Session, subscriber: Subscriber, reason: str, now: datetime) -> None:
    """Stop all mail to a confirmed address by hand (the operator's or an API client's decision), the reason kept;
    their digests not yet sent are cancelled. SubscriberError when they are not confirmed."""
    if subscriber.status != SubscriberStatus.CONFIRMED:
        raise SubscriberError(f"{subscriber.email} is {subscriber.status}: only a confirmed address is suppressed")
    subscriber.status, subscriber.suppressed_at = SubscriberStatus.SUPPRESSED, now
    subscriber.last_bounce = f"suppressed by hand: {reason}" if reason else "suppressed by hand"
    _told(session, "subscriber.suppressed", subscriber, now, reason=subscriber.last_bounce)
    session.execute(
        update(Digest)
        .where(Digest.subscriber_id == subscriber.id, Digest.status.in_(WAITING))
        .values(status=DigestStatus.CANCELLED)
    )


def unsuppress(subscriber: Subscriber, defaults: Defaults, now: datetime) -> None:
    """Take back a suppression (a bounce misread, a complaint withdrawn): confirmed again, the bounce count from
    zero, the next digest at their next slot. SubscriberError when they are not suppressed."""
    if subscriber.status != SubscriberStatus.SUPPRESSED:
        raise SubscriberError(f"{subscriber.email} is {subscriber.status}, not suppressed")
    subscriber.status, subscriber.suppressed_at, subscriber.bounces = SubscriberStatus.CONFIRMED, None, 0
    subscriber.last_bounce = None
    _place(subscriber, defaults, now)


def set_format(subscriber: Subscriber, value: str) -> None:
    """How they read their digests: "html" (with its text alternative) or "text" (a single plain-text part, still
    with its unsubscribe header and manage link); SubscriberError naming the field otherwise."""
    try:
        subscriber.format = MailFormat(value.strip().lower())
    except ValueError as e:
        raise SubscriberError(_("format: %(value)r is not html or text", value=value)) from e


def set_language(subscriber: Subscriber, code: str) -> None:
    """The language of their mails and pages (en, fr, es; "fr-CA" is fr); SubscriberError naming the field for a
    language this service is not written in."""
    try:
        subscriber.language = supported(code)
    except UnknownLanguage as e:
        raise SubscriberError(_("language: %(problem)s", problem=e)) from e


def renew_feed_key(subscriber: Subscriber) -> None:
    """A new personal feed link: the old one stops working (their other links are untouched)."""
    subscriber.feed_key = new_key()


def unsubscribe(session: Session, email: str, now: datetime, theme: str | None = None) -> Subscriber:
    """Leave one theme, or everything; takes effect at once, digests not yet sent are cancelled."""
    subscriber = get_subscriber(session, email)
    if theme is not None:
        (target,) = resolve_themes(session, [theme])
        subscriber.subscriptions[:] = [s for s in subscriber.subscriptions if s.theme_id != target.id]
        if subscriber.subscriptions:
            return subscriber
    unsubscribe_subscriber(session, subscriber, now)
    return subscriber


def unsubscribe_subscriber(session: Session, subscriber: Subscriber, now: datetime) -> None:
    subscriber.status, subscriber.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, now
    _told(session, "subscriber.unsubscribed", subscriber, now, reason="by their own hand")
    # Everything not sent, a `sending` leftover too; a sender with it in flight still records it sent.
    session.execute(
        update(Digest)
        .where(Digest.subscriber_id == subscriber.id, Digest.status.in_(WAITING))
        .values(status=DigestStatus.CANCELLED)
    )


@dataclass(frozen=True)
class Request:
    """What a subscribe request from the web comes to: which mail to send the address, and their key.

    ``mail`` is "confirm" (a pending subscription, new or again) or "manage" (already confirmed: their themes
    are changed on the manage page, not by whoever typed the address in).
    """

    mail: str
    key: str
    # The language of the mail to send them (None: the operator's default_language).
    language: str | None
    # The names of the themes asked for, sorted (what a confirmation lists).
    themes: list[str] = field(default_factory=list)


def request_subscription(
    session: Session,
    email: str,
    theme_names: Iterable[str],
    now: datetime,
    choice: Choice | None = None,
    language: str | None = None,
) -> Request:
    """A subscribe request from the web: a pending subscription to exactly these themes (in ``language``)
    awaiting confirmation, unless the address is confirmed already (whose language stays theirs). Nothing here
    tells the caller whether the address was known."""
    address = normalize_email(email)
    themes = resolve_themes(session, theme_names)
    if not themes:
        raise SubscriberError(_("Choose at least one theme."))
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.email == address).options(selectinload(Subscriber.subscriptions))
    )
    if subscriber is not None and subscriber.status == SubscriberStatus.CONFIRMED:
        return Request("manage", subscriber.key, subscriber.language)
    if subscriber is not None:
        # Pending, unsubscribed or suppressed: the last request names the themes they will confirm.
        if subscriber.status in GONE:
            start_over(subscriber)
        subscriber.status = SubscriberStatus.PENDING
        subscriber.subscriptions.clear()
        session.flush()
    subscriber = subscribe(session, address, [t.slug for t in themes], now, choice=choice, language=language)
    return Request("confirm", subscriber.key, subscriber.language, sorted(t.name for t in themes))


def set_themes(session: Session, subscriber: Subscriber, theme_names: Iterable[str], now: datetime) -> None:
    """Subscribe to exactly these themes: those kept keep their place, those added start from now."""
    themes = resolve_themes(session, theme_names)
    if not themes:
        raise SubscriberError(_("Choose at least one theme."), _("Or leave with the unsubscribe button."))
    wanted = {t.id for t in themes}
    subscriber.subscriptions[:] = [s for s in subscriber.subscriptions if s.theme_id in wanted]
    have = {s.theme_id for s in subscriber.subscriptions}
    cursor = membership_cursor(session, now, 0)
    for theme_id in sorted(wanted - have):
        subscriber.subscriptions.append(Subscription(theme_id=theme_id, created_at=now, cursor=cursor))
    session.flush()


def erase(session: Session, subscriber: Subscriber, now: datetime) -> None:
    """Delete the subscriber and everything that names them (subscriptions, digests and with them their share of
    the ledger, resends; the contents they shared with others name nobody); an anonymous row of counts stays.
    Every link they were sent stops working; subscribing again starts afresh."""
    sent = session.scalar(
        select(func.count())
        .select_from(Digest)
        .where(Digest.subscriber_id == subscriber.id, Digest.status == DigestStatus.SENT)
    )
    _told(session, "subscriber.erased", subscriber, now)
    outbox.forget(session.connection(), subscriber.email)  # this event too, once delivered
    day = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    session.add(Erasure(erased_on=day, digests_sent=sent or 0, themes=len(subscriber.subscriptions)))
    digests = select(Digest.id).where(Digest.subscriber_id == subscriber.id)
    session.execute(delete(Resend).where(Resend.digest_id.in_(digests)))
    session.execute(delete(Digest).where(Digest.subscriber_id == subscriber.id))
    session.execute(delete(Subscription).where(Subscription.subscriber_id == subscriber.id))
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    session.expunge(subscriber)
