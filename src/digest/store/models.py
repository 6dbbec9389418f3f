"""The store: themes, practices, memberships, subscribers, subscriptions, planned digests, their contents and
what each content gives (the ledger)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import TextClause, false, text

from digest.store.states import (
    UNSENT,
    WAITING,
    BounceKind,
    DigestStatus,
    EnumText,
    Frequency,
    JobOutcome,
    MailFormat,
    SourceStatus,
    SubscriberStatus,
    UTCDateTime,
    WebhookState,
    among,
    check,
)

# Constraint names fixed by convention, so migrations name them the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Theme(Base):
    __tablename__ = "themes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    slug: Mapped[str] = mapped_column(String(300), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Goes up, and changed_at moves, whenever a practice joins the theme or one of its practices changes
    # (digest.store.themes.touch): the theme's feeds are a function of these, so a conditional GET is answered
    # from this row alone.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Nullable for SQLite's sake (migration 0015 added it in place); always set, read through coalesce with created_at.
    changed_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=lambda context: context.get_current_parameters()["created_at"]
    )


class Practice(Base):
    __tablename__ = "practices"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Hash of the identity: short, fixed-length, safe in a unique index and in permanent feed ids.
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    # What makes this practice itself: "url:...", "guid:..." or "text:<fingerprint>".
    identity: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    title_derived: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str] = mapped_column(Text, default="")
    # Sanitised HTML of the summary when the source gave HTML (feeds); None for plain-text sources.
    summary_html: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[str | None] = mapped_column(String(300))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Hash of title + summary, to tell an update from a repeat.
    content_hash: Mapped[str] = mapped_column(String(64))
    # The language it is written in (a BCP 47 tag) as its source says; None: the source does not say.
    language: Mapped[str | None] = mapped_column(String(35))

    memberships: Mapped[list[Membership]] = relationship(back_populates="practice")


class PracticeKey(Base):
    """One of the identities a practice is known by (guid, URL, text fingerprint), hashed like the uid.

    A listing page (text only) and the theme's feed (guid and link) describe the same practice; the keys
    let either find the one row, whichever arrived first.
    """

    __tablename__ = "practice_keys"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), index=True)


class PracticeTranslation(Base):
    """A practice's source names another as the same practice in another language (by its URL or id), stored as
    the key that practice is (or will be) known by: the two are linked whichever arrives first."""

    __tablename__ = "practice_translations"

    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class Membership(Base):
    """A practice joined a theme; the id is store order, which is what "new since" counts in."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("practice_id", "theme_id"),
        Index("ix_memberships_theme_id_id", "theme_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"))
    theme_id: Mapped[int] = mapped_column(ForeignKey("themes.id", ondelete="CASCADE"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())

    practice: Mapped[Practice] = relationship(back_populates="memberships")
    theme: Mapped[Theme] = relationship()


def new_key() -> str:
    """A subscriber's random, opaque key: what their signed links name (never their id or address)."""
    return secrets.token_urlsafe(16)


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint(check("status", SubscriberStatus), name="status"),
        CheckConstraint(check("frequency", Frequency), name="frequency"),
        CheckConstraint("hour BETWEEN 0 AND 23", name="hour"),
        CheckConstraint("day BETWEEN 0 AND 31", name="day"),
        Index("uq_subscribers_feed_key", "feed_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # Random and opaque; signed links (confirm, manage, unsubscribe, view) name this. Erasing the subscriber
    # erases it, so every link they were ever sent stops working.
    key: Mapped[str] = mapped_column(String(43), unique=True, default=new_key)
    status: Mapped[SubscriberStatus] = mapped_column(
        EnumText(SubscriberStatus), default=SubscriberStatus.PENDING, index=True
    )
    # Hard bounces (5xx for the address) since the last accepted message.
    bounces: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_bounce: Mapped[str | None] = mapped_column(Text)
    suppressed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Before per-subscriber schedules: the last weekly period planned (read once to place next_due_at).
    last_period: Mapped[str | None] = mapped_column(String(32))
    # Their schedule (digest.schedules.slots); None is "as the operator's default".
    frequency: Mapped[Frequency | None] = mapped_column(EnumText(Frequency, 10))
    day: Mapped[int | None] = mapped_column(Integer)
    hour: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))
    # When their next digest is due (a slot of their schedule); planning reads only those due. None: not
    # placed yet (placed by the next planning run).
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # Nothing is sent before this instant (the start of the local day they chose to resume).
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What their personal feed's link names: its own random key, so a new feed link revokes the old one without
    # touching the links in their mails. Unique (uq_subscribers_feed_key); nullable for SQLite's sake (added in place
    # by migration 0015), always set.
    feed_key: Mapped[str | None] = mapped_column(String(43), default=new_key)
    # The languages of the practices they want (space-separated BCP 47 tags); None: every language.
    practice_languages: Mapped[str | None] = mapped_column(String(200))
    # The language their mails and pages are written in (digest.text.i18n.LANGUAGES); None: the default_language.
    language: Mapped[str | None] = mapped_column(String(8))
    # They follow their themes in a feed reader only: no digest is planned for them.
    feed_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When their welcome mail went (None: not yet); set once, so it never goes twice.
    welcomed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # How they read their digests (MailFormat): None is HTML with its text alternative.
    format: Mapped[MailFormat | None] = mapped_column(EnumText(MailFormat, 8))
    # When the "do you still want these?" mail went, after their digests bounced softly again and again (None: not
    # asked, or they answered). Unanswered for reconfirm_days, they leave with left_reason "stopped receiving".
    reconfirm_asked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When they last answered "yes, keep sending" (or changed anything on their page): soft bounces before it
    # no longer count.
    reconfirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why they left when it was not by their own hand ("stopped receiving"); None otherwise.
    left_reason: Mapped[str | None] = mapped_column(String(40))

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="subscriber", cascade="all, delete-orphan")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("subscriber_id", "theme_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    theme_id: Mapped[int] = mapped_column(ForeignKey("themes.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Memberships of this theme with an id above the cursor are new to this subscriber.
    cursor: Mapped[int] = mapped_column(Integer, default=0)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    theme: Mapped[Theme] = relationship()


# The predicate of ix_digests_waiting, written out: a query uses that index only when its WHERE has this very term.
WAITING_SQL = among("status", WAITING)
# The predicate of ix_digests_sent_at (a comparison with sent_at implies it, in both databases).
SENT_SQL = "sent_at IS NOT NULL"
# The predicate of ix_digests_unsent: failed or cancelled (what the operator's figures count besides sent and waiting).
UNSENT_SQL = among("status", UNSENT)
# The predicate of ix_digests_sending: claimed and not finished (a few hundred at most, however many wait).
SENDING_SQL = among("status", frozenset({DigestStatus.SENDING}))


def waiting() -> TextClause:
    """The waiting digests (planned, deferred, sending), in the words of ix_digests_waiting's predicate: every query
    that looks for digests by state says this, so that it reads that index (SQLite matches a partial index's WHERE
    term by term, and a bound IN list never matches). There is no index on status: each change of state would
    move a row in it (two B-tree writes per claim and per outcome), and every question asked by state is about the
    waiting ones or about one subscriber's digests."""
    return text(f"digests.{WAITING_SQL}")


def sending() -> TextClause:
    """The digests claimed and not finished, in the words of ix_digests_sending's predicate (see waiting)."""
    return text(f"digests.{SENDING_SQL}")


def due(now: datetime) -> ColumnElement[bool]:
    """Subscribers whose digest is due now: confirmed, their next digest due at or before now, not paused, not
    reading by feed only. Planning plans for them; the operator's figures count them."""
    return and_(
        Subscriber.status == SubscriberStatus.CONFIRMED,
        Subscriber.next_due_at <= now,
        Subscriber.feed_only.is_(False),
        or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
    )


class Digest(Base):
    """One subscriber's digest for one period: planned once, content frozen, Message-ID fixed."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "period"),
        CheckConstraint(check("status", DigestStatus), name="status"),
        # The digests a sender may claim, in id order, and nothing else: a claim walks the first few of these
        # whatever was sent before (an index on status alone gives every waiting row to sort, on each claim).
        Index("ix_digests_waiting", "id", sqlite_where=text(WAITING_SQL), postgresql_where=text(WAITING_SQL)),
        # The hourly limit counts what went out in the last hour before each claim. Only digests sent are in
        # it: a digest planned or claimed (sent_at still empty) costs it nothing.
        Index("ix_digests_sent_at", "sent_at", sqlite_where=text(SENT_SQL), postgresql_where=text(SENT_SQL)),
        # Failed and cancelled digests (few; a row enters once, when it ends so), counted for the operator.
        Index("ix_digests_unsent", "id", sqlite_where=text(UNSENT_SQL), postgresql_where=text(UNSENT_SQL)),
        # Who holds claims, and how many are in flight (senders ask each second; the hourly limit at each claim):
        # read from the claims alone, not from every waiting digest (50k of them early in a big run).
        Index("ix_digests_sending", "claimed_by", sqlite_where=text(SENDING_SQL), postgresql_where=text(SENDING_SQL)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(32))
    # Not indexed: see waiting().
    status: Mapped[DigestStatus] = mapped_column(EnumText(DigestStatus), default=DigestStatus.PLANNED)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    # The frozen content (JSON of digest.mail.plan.compose.DigestContent), stored once per distinct content: every
    # digest with the same practices in the same slot points at one row of `contents`.
    # Not indexed: nothing looks digests up by content, and contents are never deleted.
    content_hash: Mapped[str] = mapped_column(ForeignKey("contents.hash"))
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Indexed where set (ix_digests_sent_at).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Claims for sending (each run that tried it once counts one).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A deferred digest is due again from this instant.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who holds the `sending` claim ("host:pid") and since when; a dead holder's claim is taken over.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    subscriber: Mapped[Subscriber] = relationship()
    frozen: Mapped[Content] = relationship()

    @property
    def content(self) -> str:
        """The frozen content's JSON; rendering reads only this."""
        return self.frozen.body


class Content(Base):
    """A digest's frozen content, content-addressed: the SHA-256 of its JSON and of what it gives (its
    content_practices rows) is its key, so it is stored once however many digests carry it (everyone with the
    same themes gets the same digest in a slot). digest.mail.plan.planner.content_key computes it."""

    __tablename__ = "contents"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Resend(Base):
    """A recorded digest sent again on request (`digest resend`), with its own Message-ID."""

    __tablename__ = "resends"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ContentPractice(Base):
    """What a content gives, in order: each practice it accounts for, under which theme, listed or only counted
    (past the digest's cap). A content's hash covers these rows as well as its JSON, so everyone who carries it
    was given exactly these. The ledger of who was given what is the digests joined with these rows: a few rows
    per distinct content instead of a row per subscriber and practice, so what a digest costs the store does not
    grow with what it holds."""

    __tablename__ = "content_practices"

    content_hash: Mapped[str] = mapped_column(ForeignKey("contents.hash", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), index=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("themes.id", ondelete="CASCADE"))
    # Past the digest's cap: counted in it ("and 12 more"), not listed; given all the same, never again.
    summarised: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SourceState(Base):
    """What the last fetch of a source did: validators for conditional GET, status and last error."""

    __tablename__ = "sources"
    __table_args__ = (CheckConstraint(check("status", SourceStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The path or URL, as configured or given to `digest ingest`.
    location: Mapped[str] = mapped_column(String(2000), unique=True)
    status: Mapped[SourceStatus] = mapped_column(EnumText(SourceStatus))
    last_fetch_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    # Failures since the last success.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # Items in the last successful parse, and items left out of it.
    items: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)


class Lease(Base):
    """Who runs the scheduler: one row per lease name, held by one worker until it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    # "host:pid" of the holder.
    holder: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ScheduledJob(Base):
    """A job the leader schedules, with its trigger and next run, for `digest status`."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    trigger: Mapped[str] = mapped_column(Text)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobRun(Base):
    """One run of a scheduled job: when, by whom, how it ended, what it counted."""

    __tablename__ = "job_runs"
    __table_args__ = (
        Index("ix_job_runs_job_id_id", "job_id", "id"),
        CheckConstraint(check("outcome", JobOutcome), name="outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(50))
    run_id: Mapped[str] = mapped_column(String(40))
    holder: Mapped[str] = mapped_column(String(200))
    # Why it ran: "scheduled" or "catch-up" (a slot missed while no worker was up).
    reason: Mapped[str] = mapped_column(String(20), default="scheduled")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[JobOutcome] = mapped_column(EnumText(JobOutcome))
    # JSON of what it did (sent, planned, new practices...).
    counts: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class Erasure(Base):
    """What is left of a subscriber who asked to be erased: anonymous counts, the day, nothing that names them."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The day (UTC midnight), not the instant: the row must not line up with a log line.
    erased_on: Mapped[datetime] = mapped_column(UTCDateTime())
    digests_sent: Mapped[int] = mapped_column(Integer, default=0)
    themes: Mapped[int] = mapped_column(Integer, default=0)


class Tally(Base):
    """A count kept by triggers (migration 0016): 'sent' is every digest ever sent, erased subscribers' included."""

    __tablename__ = "tallies"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """A token of the REST API (/api/v1/): only its SHA-256 is kept (the token is printed once, at creation). A read
    token reads; a write token also writes. Revoked tokens stay (their name, for the audit log), refused."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what to whom, when, from where: each change made through the API (and the operator's actions)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # "api:<token name>" or "operator".
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    # The address acted on (kept as long as the subscriber is; an erasure blanks it).
    subject: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    # A short keyed hash of the client's address (enough to group, nothing to trace).
    client: Mapped[str] = mapped_column(String(16), default="")


class WebhookEndpoint(Base):
    """Where events are delivered (Standard Webhooks): a URL, its signing secret (whsec_...), the event types it wants
    (space-separated; "" = every type). Failing for three days, it is disabled (``disabled_at``)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    events: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Since when every try has failed (None: the last one succeeded, or none was made yet).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookMessage(Base):
    """An event in the outbox, written in the same transaction as the change it tells of. ``subject`` is the address
    it is about, if any: when that subscriber is erased, the payload is blanked once its deliveries are done."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(320), default="", index=True)
    # Blank the payload once delivered (its subscriber was erased).
    forget: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event for one endpoint: its tries, the last answer, when it goes next. The endpoint's delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(check("state", WebhookState), name="state"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    state: Mapped[WebhookState] = mapped_column(EnumText(WebhookState, 10), default=WebhookState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RelayHealth(Base):
    """An SMTP relay's state as the senders last found it (written when it changes): up, or down since when and why.
    Named by its scheme, host and port, never with its credentials."""

    __tablename__ = "relay_health"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)
    up: Mapped[bool] = mapped_column(Boolean)
    last_error: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RateWindow(Base):
    """A counter in a fixed time window, shared by every process on the store (web rate limits)."""

    __tablename__ = "rate_windows"

    # A hash of what is counted (an address, a client), never the value itself.
    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)


class Bounce(Base):
    """A bounce kept for one subscriber's digest: a refusal at RCPT during the SMTP transaction, or a report read
    from the bounce mailbox (a DSN, a prose bounce); hard (the address is gone) or soft, with its reason.
    ``source`` (a hash of what it is about: digest.mail.replies.bounces.report_key for a report,
    digest.store.bounces.at_transaction_key for a refusal) keeps a re-read or a replay from counting it twice."""

    __tablename__ = "bounces"
    __table_args__ = (CheckConstraint(check("kind", BounceKind), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64), unique=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="SET NULL"))
    kind: Mapped[BounceKind] = mapped_column(EnumText(BounceKind, 4))
    # The RFC 3463 status (5.1.1) and the remote server's words.
    status: Mapped[str] = mapped_column(String(20))
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Why (digest.mail.replies.classify's vocabulary: user-unknown, mailbox-full ...); None for rows from before.
    reason: Mapped[str | None] = mapped_column(String(20))
