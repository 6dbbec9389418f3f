"""The REST API, /api/v1/: JSON for other tools (a CRM, a sign-up form elsewhere, an automation service).

Described by an OpenAPI 3.1 document generated from this code (spectree: the request and answer models below are
pydantic's, validated on the way in and out) at /api/v1/openapi.json, and a reference page at /api/v1/. A token in
``Authorization: Bearer`` (`digest api token create`): none or a wrong one 401, a read token writing 403, too many
requests 429 with Retry-After (``api_per_minute`` per token, counted in the store). Every error is RFC 9457
``application/problem+json``. Reads carry an ETag (If-None-Match: 304); lists are paged by an opaque cursor bound to
the query that made it. Writes call the same functions as the pages and the command line, each in one transaction
with its audit line (who: the token's name).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any, Literal, TypeVar

from flask import Blueprint, Response, g, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from spectree import Response as Answers
from spectree import SpecTree
from werkzeug.exceptions import HTTPException

from digest import clock, logs
from digest.access import audit, tokens
from digest.errors import DigestError, NotFoundError, SubscriberError, TransportError
from digest.mail.send.notices import send_confirmation
from digest.mail.send.transport import transport_for
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import ScheduleError, choice_of, parse_choice
from digest.store import counters, queries
from digest.store.db import transaction
from digest.store.states import SubscriberStatus
from digest.subscriptions import subscribers as people
from digest.web import actions
from digest.web.site import client, site

blueprint = Blueprint("rest", __name__, url_prefix="/api/v1")
events = logs.EventLog("digest.web")
PROBLEM = "application/problem+json"
LANGUAGES = Literal["en", "fr", "es"]
STATUSES = Literal["pending", "confirmed", "unsubscribed", "suppressed"]


# Models ----------------------------------------------------------------------------------------------------------


class Problem(BaseModel):
    """RFC 9457: what went wrong, for a program (type, status) and a person (title, detail)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[dict[str, Any]] | None = None


class Theme(BaseModel):
    name: str
    slug: str
    practices: int
    subscribers: int


class ThemeList(BaseModel):
    items: list[Theme]


class ThemePath(BaseModel):
    slug: str = Field(max_length=200)


class Subscriber(BaseModel):
    email: str
    status: str
    themes: list[str]
    language: str | None
    format: str | None
    schedule: str
    paused_until: str | None
    confirmed_at: str | None
    next_due_at: str | None
    feed_only: bool
    reconfirm_asked_at: str | None
    left_reason: str | None
    last_bounce: str | None


class SubscriberDetail(Subscriber):
    digests_sent: int
    digests_total: int
    bounces_in_a_row: int


class SubscriberPage(BaseModel):
    items: list[Subscriber]
    next_cursor: str | None


def _query_schema(schema: dict[str, Any]) -> None:
    """A query parameter that may be left out is documented as its type alone: a query string has no null to send,
    and a null default is no value of that type."""
    for prop in schema.get("properties", {}).values():
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            prop.update(branches[0])
        if prop.get("default", 0) is None:
            del prop["default"]


class SubscriberQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_query_schema)
    prefix: str | None = Field(None, max_length=320, description="Addresses starting with this")
    status: STATUSES | None = None
    theme: str | None = Field(None, max_length=200, description="A theme's slug")
    cursor: str | None = Field(None, max_length=400, description="next_cursor of the page before")
    limit: int = Field(100, ge=1, le=100)


class EmailPath(BaseModel):
    email: str = Field(max_length=320)


class NewSubscriber(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    themes: list[str] = Field(min_length=1, max_length=100, description="Theme slugs or names")
    language: LANGUAGES | None = None
    confirmed: bool = Field(False, description="True only for addresses that consented elsewhere: no confirmation")


class SubscriberChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    themes: list[str] | None = Field(None, min_length=1, max_length=100)
    language: LANGUAGES | None = None
    format: Literal["html", "text"] | None = None
    frequency: Literal["daily", "weekly", "monthly"] | None = None
    day: int | None = Field(None, ge=0, le=31, description="Weekly: 0 (Monday) to 6; monthly: 1 to 28, or 31 (last)")
    hour: int | None = Field(None, ge=0, le=23, description="Their local hour")
    timezone: str | None = Field(None, max_length=64, description="An IANA zone: Europe/Paris")
    paused_until: date | None = Field(None, description="Send nothing before this day (their zone); see resume")
    resume: bool | None = Field(None, description="true: end a pause now")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class PracticeThemeRef(BaseModel):
    name: str
    slug: str


class PracticeOut(BaseModel):
    id: int
    title: str
    summary: str
    url: str | None
    submitted_by: str | None
    themes: list[PracticeThemeRef]
    added: str | None
    language: str | None
    published: str | None


class PracticePage(BaseModel):
    items: list[PracticeOut]
    next_cursor: str | None


class PracticeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_query_schema)
    theme: str | None = Field(None, max_length=200, description="A theme's slug")
    since: datetime | None = Field(None, description="Added here since (ISO 8601, with its offset)")
    language: str | None = Field(None, max_length=35, pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
    cursor: str | None = Field(None, max_length=400, description="next_cursor of the page before")
    limit: int = Field(100, ge=1, le=100)


class NewPractice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=500)
    summary: str = Field("", max_length=20_000)
    url: str | None = Field(None, max_length=2000)
    themes: list[str] = Field(min_length=1, max_length=50, description="Theme names (a new name makes a theme)")
    language: str | None = Field(None, max_length=35)
    submitted_by: str | None = Field(None, max_length=200)
    published: str | None = Field(None, max_length=40, description="ISO 8601")


class BounceOut(BaseModel):
    id: int
    email: str
    kind: str
    status: str
    reason: str
    diagnostic: str
    received_at: str


class BounceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_query_schema)
    kind: Literal["hard", "soft"] | None = None
    cursor: str | None = Field(None, max_length=400, description="next_cursor of the page before")
    limit: int = Field(100, ge=1, le=100)


class BouncePage(BaseModel):
    items: list[BounceOut]
    next_cursor: str | None


class Complaint(BaseModel):
    email: str
    suppressed_at: str
    feedback_type: str


class ComplaintList(BaseModel):
    items: list[Complaint]


class Digest(BaseModel):
    period: str
    status: str
    subject: str | None
    message_id: str
    planned_at: str | None
    sent_at: str | None
    attempts: int
    last_error: str | None
    practices: int


class DigestList(BaseModel):
    items: list[Digest]


class DigestDetail(Digest):
    email: str


# The answers every route may give besides its own (spectree puts them in the document).
_COMMON = {"HTTP_401": Problem, "HTTP_403": Problem, "HTTP_429": Problem, "HTTP_503": Problem}
spec = SpecTree(
    "flask",
    title="digest API",
    version="v1",
    path="api/v1/spec",
    mode="strict",
    annotations=False,
    validation_error_status=422,
    naming_strategy=lambda model: model.__name__,
    security_schemes=[
        {"name": "token", "data": {"type": "http", "scheme": "bearer", "description": "`digest api token create`"}}
    ],
    security={"token": []},
)


def documented(tags: str, **models_and_answers: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """spectree's validate: the request's models in, the answers out (with those every route may give), into the
    OpenAPI document; an input that fails its model a 422 problem."""
    codes = {k: v for k, v in models_and_answers.items() if k.startswith("HTTP_")}
    models = {k: v for k, v in models_and_answers.items() if not k.startswith("HTTP_")}
    validate: Any = spec.validate
    decorator: Callable[[Callable[..., Any]], Callable[..., Any]] = validate(
        resp=Answers(**codes, **_COMMON), tags=[tags], before=_refused_input, **models
    )
    return decorator


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}


def problem(status: int, title: str, detail: str = "", errors: list[dict[str, Any]] | None = None) -> Response:
    body = Problem(title=title, status=status, detail=detail, errors=errors).model_dump(exclude_none=True)
    return Response(json.dumps(body), status=status, content_type=PROBLEM)


def _refused_input(req: Any, resp: Any, error: Any, instance: Any, *_: Any) -> None:
    """spectree's hook before a view: an input that fails its model is a 422 problem naming each field."""
    if error is not None:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in error.errors()
        ]
        raise _Invalid(errors)


class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid input")
        self.errors = errors


# Authentication, limits, ETags -------------------------------------------------------------------------------------


def authorised(write: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The view answers only a live token (a write token for ``write``), within its rate."""

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, presented = header.partition(" ")
            now = clock.now()
            settings = site().settings
            with transaction(site().sessions) as session:
                holder = tokens.holder(session, presented.strip(), now) if scheme.lower() == "bearer" else None
                if holder is None:
                    raise ProblemError(
                        401,
                        "Unauthorized",
                        "send Authorization: Bearer <token> (`digest api token create NAME`)",
                        {"WWW-Authenticate": 'Bearer realm="digest api"'},
                    )
                bucket = "api:" + tokens.digest_of(presented.strip())[:24]
                if not counters.take(session, bucket, settings.api_per_minute, timedelta(minutes=1), now):
                    wait = 60 - int(now.timestamp()) % 60
                    raise ProblemError(
                        429,
                        "Too Many Requests",
                        f"{settings.api_per_minute} requests a minute",
                        {"Retry-After": str(wait)},
                    )
            if write and not holder.can_write:
                raise ProblemError(403, "Forbidden", "this token reads only (`digest api token create NAME --write`)")
            g.api_actor = f"api:{holder.name}"
            return view(*args, **kwargs)

        return guarded

    return wrap


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = model.model_dump_json()
    response = Response(body, status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if request.method == "GET":
        tag = hashlib.sha256(body.encode()).hexdigest()[:32]
        response.set_etag(tag)
        response.headers["Cache-Control"] = "private, no-cache"
        if request.if_none_match.contains(tag):
            return Response(
                status=304, headers={"ETag": response.headers["ETag"], "Cache-Control": "private, no-cache"}
            )
    return response


M = TypeVar("M", bound=BaseModel)


def _body(model: type[M]) -> M:
    """The request's JSON body as ``model`` (no body: an empty object); a body that is not JSON is a 422."""
    if not request.get_data():
        return model.model_validate({})
    raw = request.get_json(silent=True, force=True)
    if raw is None:
        raise _Invalid([{"loc": ["body"], "msg": "the body is not a JSON document", "type": "json_invalid"}])
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise _Invalid(
            [{"loc": [str(p) for p in x["loc"]], "msg": x["msg"], "type": x["type"]} for x in e.errors()]
        ) from None


def _audit(session: Any, action: str, subject: str, detail: str = "") -> None:
    audit.record(session, g.api_actor, action, subject, clock.now(), detail, client())


# Cursors: which query they continue, and after which address, signed so that neither can be made up.


def _cursors() -> URLSafeSerializer:
    return URLSafeSerializer(site().settings.secret_key, salt="digest.api.cursor")


def _query_key(query: BaseModel) -> str:
    """What a query asked, but its cursor: a cursor continues only the query that made it."""
    shape = type(query).__name__ + query.model_dump_json(exclude={"cursor"})
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


def _after(query: Any) -> str | None:
    if query.cursor is None:
        return None
    try:
        said = _cursors().loads(query.cursor)
    except BadSignature:
        raise ProblemError(400, "Bad cursor", "this cursor was not made by this API: start without one") from None
    if not isinstance(said, list) or len(said) != 2 or said[0] != _query_key(query):
        raise ProblemError(400, "Bad cursor", "this cursor belongs to another query: repeat that query's filters")
    return str(said[1])


T = TypeVar("T")


def _paged(query: Any, rows: list[T], mark: Callable[[T], object]) -> tuple[list[T], str | None]:
    """A page of ``rows`` (read one past the limit) and the cursor that continues the same query after its last
    row, by ``mark`` (None: this was the last page)."""
    page = rows[: query.limit]
    more = len(rows) > query.limit
    return page, _cursors().dumps([_query_key(query), str(mark(page[-1]))]) if more and page else None


def _numbered(after: str | None) -> int | None:
    """A cursor's mark that is a row's id (practices, bounces)."""
    return int(after) if after is not None and after.isdigit() else None


# Views ---------------------------------------------------------------------------------------------------------


def _summary(row: queries.SubscriberSummary, said: dict[tuple[Any, ...], str] | None = None) -> Subscriber:
    """The API's view of a subscriber; ``said``: schedules in words already made for this answer (most share one)."""
    from digest.schedules.slots import schedule_of

    said = {} if said is None else said
    key = (row.frequency, row.day, row.hour, row.timezone)
    if key not in said:
        said[key] = schedule_of(choice_of(row), defaults_from(site().settings)).describe()
    return Subscriber.model_validate(asdict(row) | {"schedule": said[key]})


@blueprint.get("/themes")
@authorised()
@documented("themes", HTTP_200=ThemeList)
def themes() -> Response:
    """Every theme: its name, slug, practices and subscribers."""
    with site().sessions() as session:
        found = queries.themes(session)
    return _json(
        ThemeList(
            items=[Theme(name=t.name, slug=t.slug, practices=t.practices, subscribers=t.subscribers) for t in found]
        )
    )


@blueprint.get("/themes/<slug>")
@authorised()
@documented("themes", HTTP_200=Theme, HTTP_404=Problem)
def theme(slug: str) -> Response:
    """One theme, with its counts."""
    with site().sessions() as session:
        found = [t for t in queries.themes(session) if t.slug == slug]
    if not found:
        raise ProblemError(404, "Not Found", f"no theme {slug!r}: GET /api/v1/themes lists them")
    t = found[0]
    return _json(Theme(name=t.name, slug=t.slug, practices=t.practices, subscribers=t.subscribers))


@blueprint.get("/subscribers")
@authorised()
@documented("subscribers", query=SubscriberQuery, HTTP_200=SubscriberPage, HTTP_400=Problem, HTTP_422=Problem)
def subscribers() -> Response:
    """Subscribers by address, a page at a time: filtered by an address prefix, a status, a theme."""
    query = SubscriberQuery.model_validate(request.args.to_dict())
    after = _after(query)
    with site().sessions() as session:
        rows = queries.subscriber_page(session, query.prefix, query.status, query.theme, after, query.limit + 1)
    page, cursor = _paged(query, rows, lambda row: row.email)
    said: dict[tuple[Any, ...], str] = {}
    return _json(SubscriberPage(items=[_summary(r, said) for r in page], next_cursor=cursor))


def _one(session: Any, email: str) -> Any:
    try:
        return people.get_subscriber(session, email)
    except (NotFoundError, SubscriberError):
        raise ProblemError(404, "Not Found", f"no subscriber {email!r}") from None


def _detail(email: str) -> SubscriberDetail:
    with site().sessions() as session:
        found = queries.subscribers(session, email=email)
        if not found:
            raise ProblemError(404, "Not Found", f"no subscriber {email!r}")
        counts = queries.digest_counts(session, email)
    return SubscriberDetail.model_validate(_summary(found[0]).model_dump() | counts)


@blueprint.get("/subscribers/<email>")
@authorised()
@spec.validate(
    resp=Answers(HTTP_200=SubscriberDetail, HTTP_404=Problem, **_COMMON), tags=["subscribers"], before=_refused_input
)
def subscriber(email: str) -> Response:
    """One subscriber: schedule, language, themes, and a summary of their ledger and bounces."""
    return _json(_detail(email))


@blueprint.post("/subscribers")
@authorised(write=True)
@documented(
    "subscribers", json=NewSubscriber, HTTP_201=SubscriberDetail, HTTP_409=Problem, HTTP_415=Problem, HTTP_422=Problem
)
def create() -> Response:
    """Subscribe an address: pending, the confirmation mailed (double opt-in), unless ``confirmed`` (consent given
    elsewhere). 409 for an address subscribed already."""
    body = _body(NewSubscriber)
    now = clock.now()
    settings = site().settings
    try:
        address = people.normalize_email(body.email)
    except SubscriberError as e:
        raise ProblemError(422, "Unprocessable Content", str(e)) from None
    with transaction(site().sessions) as session:
        known = queries.subscribers(session, email=address)
        if known and known[0].status == SubscriberStatus.CONFIRMED:
            raise ProblemError(409, "Conflict", f"{address} is subscribed already: PATCH it to change its themes")
        if body.confirmed:
            people.subscribe(session, address, body.themes, now, confirmed=True, language=body.language)
            mail = None
        else:
            answer = people.request_subscription(session, address, body.themes, now, language=body.language)
            mail = (answer.key, answer.themes, answer.language or settings.default_language)
        _audit(session, "subscriber.create", address, "confirmed" if body.confirmed else "confirmation mailed")
    if mail is not None:
        send_confirmation(settings, transport_for(settings), address, *mail)
    return _json(_detail(address), 201, {"Location": f"/api/v1/subscribers/{address}"})


@blueprint.patch("/subscribers/<email>")
@authorised(write=True)
@documented(
    "subscribers",
    json=SubscriberChange,
    HTTP_200=SubscriberDetail,
    HTTP_404=Problem,
    HTTP_415=Problem,
    HTTP_422=Problem,
)
def change(email: str) -> Response:
    """Change a subscriber's themes, language, format, or pause (or resume)."""
    body = _body(SubscriberChange)
    now = clock.now()
    defaults = defaults_from(site().settings)
    with transaction(site().sessions) as session:
        found = _one(session, email)
        if body.themes is not None:
            people.set_themes(session, found, body.themes, now)
        if body.language is not None:
            people.set_language(found, body.language)
        if body.format is not None:
            people.set_format(found, body.format)
        if any(v is not None for v in (body.frequency, body.day, body.hour, body.timezone)):
            current = choice_of(found)
            choice = parse_choice(
                body.frequency or current.frequency,
                body.day if body.day is not None else current.day,
                body.hour if body.hour is not None else current.hour,
                body.timezone or current.timezone,
            )
            people.set_schedule(session, found, choice, defaults, now)
        if body.paused_until is not None:
            people.pause(session, found, body.paused_until, defaults, now)
        if body.resume:
            people.resume(session, found, defaults, now)
        _audit(session, "subscriber.change", found.email, body.model_dump_json(exclude_none=True))
        address = found.email
    return _json(_detail(address))


@blueprint.delete("/subscribers/<email>")
@authorised(write=True)
@documented("subscribers", HTTP_204=None, HTTP_404=Problem)
def erase(email: str) -> Response:
    """Erase a subscriber and everything stored about them, as their own erase page does."""
    _act(email, "erase", "")
    return Response(status=204)


def _act(email: str, action: str, reason: str) -> str:
    try:
        return actions.act(site().sessions, site().settings, email, action, reason, g.api_actor, client(), clock.now())
    except actions.StateConflict as e:
        raise ProblemError(409, "Conflict", str(e)) from None
    except (NotFoundError, SubscriberError):  # none, or not even an address
        raise ProblemError(404, "Not Found", f"no subscriber {email!r}") from None


_ACTION: dict[str, Any] = {
    "json": Reason,
    "HTTP_200": SubscriberDetail,
    "HTTP_404": Problem,
    "HTTP_409": Problem,
    "HTTP_415": Problem,
    "HTTP_422": Problem,
}


@blueprint.post("/subscribers/<email>/suppress")
@authorised(write=True)
@documented("subscribers", **_ACTION)
def suppress(email: str) -> Response:
    """Stop all mail to a confirmed address, with a reason (kept, and in the audit log)."""
    return _json(_detail(_act(email, "suppress", _body(Reason).reason)))


@blueprint.post("/subscribers/<email>/unsuppress")
@authorised(write=True)
@documented("subscribers", **_ACTION)
def unsuppress(email: str) -> Response:
    """Take back a suppression: confirmed again, the next digest at their next slot."""
    return _json(_detail(_act(email, "unsuppress", _body(Reason).reason)))


@blueprint.post("/subscribers/<email>/resend-confirmation")
@authorised(write=True)
@documented("subscribers", **_ACTION)
def resend_confirmation(email: str) -> Response:
    """Mail the confirmation again to an address awaiting it."""
    return _json(_detail(_act(email, "resend-confirmation", _body(Reason).reason)))


@blueprint.get("/subscribers/<email>/digests")
@authorised()
@spec.validate(
    resp=Answers(HTTP_200=DigestList, HTTP_404=Problem, **_COMMON), tags=["subscribers"], before=_refused_input
)
def digests(email: str) -> Response:
    """A subscriber's digests (the ledger): each one's period, state, times and practices."""
    from digest.store.queries import ledger

    with site().sessions() as session:
        found = _one(session, email)
        record = ledger(session, found)
    return _json(DigestList(items=[Digest.model_validate(_digest_fields(d)) for d in record.digests]))


def _practice(p: queries.PracticeSummary) -> PracticeOut:
    return PracticeOut.model_validate(asdict(p))


@blueprint.get("/practices")
@authorised()
@documented(
    "practices", query=PracticeQuery, HTTP_200=PracticePage, HTTP_400=Problem, HTTP_404=Problem, HTTP_422=Problem
)
def practices() -> Response:
    """Practices, newest first: of a theme, added since, in a language."""
    query = PracticeQuery.model_validate(request.args.to_dict())
    before = _numbered(_after(query))
    with site().sessions() as session:
        try:
            rows = queries.practices(session, query.theme, query.since, query.language, before, query.limit + 1)
        except NotFoundError:
            raise ProblemError(404, "Not Found", f"no theme {query.theme!r}: GET /api/v1/themes lists them") from None
    page, cursor = _paged(query, rows, lambda row: row.id)
    return _json(PracticePage(items=[_practice(p) for p in page], next_cursor=cursor))


def _one_practice(practice_id: int) -> PracticeOut:
    with site().sessions() as session:
        found = queries.practices(session, before=practice_id + 1, limit=1)
    if not found or found[0].id != practice_id:
        raise ProblemError(404, "Not Found", f"no practice {practice_id}")
    return _practice(found[0])


@blueprint.get("/practices/<int:practice_id>")
@authorised()
@documented("practices", HTTP_200=PracticeOut, HTTP_404=Problem)
def practice(practice_id: int) -> Response:
    """One practice, with its themes."""
    return _json(_one_practice(practice_id))


@blueprint.post("/practices")
@authorised(write=True)
@documented("practices", json=NewPractice, HTTP_200=PracticeOut, HTTP_201=PracticeOut, HTTP_422=Problem)
def add_practice() -> Response:
    """Add a practice as the source "api": checked, deduplicated and stored as any ingest (200 with the practice it
    matched, when it is known already); its themes' feeds change, and their hubs are told."""
    from digest.feeds import websub
    from digest.ingest import ingest_record

    body = _body(NewPractice)
    settings = site().settings
    before = websub.revisions(site().sessions)
    record = {k: v for k, v in body.model_dump().items() if v is not None}
    report = ingest_record(site().sessions, record, "api", clock.now())
    if report.rejected or not report.practice_ids:
        reason = report.rejected[0].reason if report.rejected else "nothing to store"
        raise ProblemError(422, "Unprocessable Content", reason)
    with transaction(site().sessions) as session:
        _audit(session, "practice.add", "", f"{report.practice_ids[0]}: {body.title}")
    websub.announce(site().sessions, settings, before)
    stored = _one_practice(report.practice_ids[0])
    if report.new:
        return _json(stored, 201, {"Location": f"/api/v1/practices/{stored.id}"})
    return _json(stored)


@blueprint.get("/bounces")
@authorised()
@documented("replies", query=BounceQuery, HTTP_200=BouncePage, HTTP_400=Problem, HTTP_422=Problem)
def bounces() -> Response:
    """Bounces kept, newest first: whose, hard or soft, the status, the reason and the server's words."""
    query = BounceQuery.model_validate(request.args.to_dict())
    with site().sessions() as session:
        rows = queries.bounce_page(session, None, query.kind, _numbered(_after(query)), query.limit + 1)
    page, cursor = _paged(query, rows, lambda row: row.id)
    return _json(BouncePage(items=[BounceOut.model_validate(asdict(r)) for r in page], next_cursor=cursor))


@blueprint.get("/complaints")
@authorised()
@documented("replies", HTTP_200=ComplaintList)
def complaints() -> Response:
    """Subscribers a spam complaint suppressed, the newest first (the hundred last)."""
    with site().sessions() as session:
        rows = queries.complaints(session)
    return _json(ComplaintList(items=[Complaint(email=e, suppressed_at=t, feedback_type=f) for e, t, f in rows]))


@blueprint.get("/digests/<int:digest_id>")
@authorised()
@documented("subscribers", HTTP_200=DigestDetail, HTTP_404=Problem)
def digest(digest_id: int) -> Response:
    """One digest's state: whose, its period, state, times, attempts, last error."""
    with site().sessions() as session:
        found = queries.one_digest(session, digest_id)
    if found is None:
        raise ProblemError(404, "Not Found", f"no digest {digest_id}")
    email, d = found
    return _json(DigestDetail.model_validate(_digest_fields(d) | {"email": email}))


def _digest_fields(d: queries.LedgerDigest) -> dict[str, Any]:
    """A ledger's digest as the API tells it: its practices counted."""
    return asdict(d) | {"practices": len(d.practices)}


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API (no token needed: it holds no data)."""
    return Response(json.dumps(document()), content_type="application/json")


@blueprint.get("/")
def reference() -> Any:
    """The API's reference, for people: every route, its parameters and answers, from the same document."""
    return render_template("api.html", document=document(), switcher=[])


def document() -> dict[str, Any]:
    import copy

    found: dict[str, Any] = copy.deepcopy(spec.spec)
    paths = {p: v for p, v in found.get("paths", {}).items() if p.startswith("/api/v1/") and "/spec/" not in p}
    found["paths"] = paths
    # Every error is RFC 9457 problem+json: said so in the document (spectree writes application/json for all).
    for operations in paths.values():
        for operation in operations.values():
            for answer in operation.get("responses", {}).values():
                content = answer.get("content", {})
                body = content.get("application/json", {})
                if body.get("schema", {}).get("$ref", "").endswith("/Problem"):
                    answer["content"] = {PROBLEM: body}
    found["info"] = {
        "title": "digest API",
        "version": "v1",
        "description": "Themes and subscribers of this digest service. Errors are RFC 9457 problem+json.",
    }
    return found


# Errors: every answer under /api/ is problem+json ------------------------------------------------------------------


def answered(error: BaseException) -> Response | None:
    """The problem+json answer to an error raised under /api/ (None elsewhere: the pages answer it)."""
    if not request.path.startswith("/api/"):
        return None
    if isinstance(error, ProblemError):
        response = problem(error.status, error.title, error.detail)
        for name, value in error.headers.items():
            response.headers[name] = value
        return response
    if isinstance(error, _Invalid):
        return problem(422, "Unprocessable Content", "the request does not match its schema", error.errors)
    if isinstance(error, HTTPException):
        code = error.code or 500
        if code == 415 or (code == 400 and request.method in ("POST", "PATCH") and not request.is_json):
            return problem(415, "Unsupported Media Type", "send a JSON body with Content-Type: application/json")
        return problem(code, error.name, error.description or "")
    if isinstance(error, TransportError):
        response = problem(503, "Service Unavailable", f"the mail could not be sent: {error}")
        response.headers["Retry-After"] = "120"
        return response
    if isinstance(error, ScheduleError):
        return problem(422, "Unprocessable Content", str(error))
    if isinstance(error, (SubscriberError, NotFoundError, DigestError)):
        status = 404 if isinstance(error, NotFoundError) else 422
        return problem(status, "Not Found" if status == 404 else "Unprocessable Content", str(error))
    return None
