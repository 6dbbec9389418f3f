"""Public pages: the home page (themes and the subscribe form), theme pages and practice pages."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from flask import Blueprint, Response, abort, render_template, request, session
from flask_wtf.csrf import generate_csrf
from sqlalchemy import text

from digest.schedules.defaults import defaults_from
from digest.schedules.slots import WEEKDAYS, Choice
from digest.store import queries
from digest.store.feeds import AllStamp, all_stamp
from digest.text import i18n
from digest.web.site import page_number, site

blueprint = Blueprint("pages", __name__)


# Where the home page's CSRF token goes in the page kept between changes (a token is URL-safe base64: no escaping).
_CSRF_SLOT = "\x00csrf\x00"


# Themes a home page lists and its form offers: a page stays small however many themes there are (the rest on
# ?page=2, 3, ...; each theme's own page links its feed).
HOME_THEMES = 100


@dataclass(frozen=True)
class ThemesPage:
    """One page of the home page's themes."""

    themes: list[queries.ThemeOverview]
    number: int
    pages: int


def themes_page(themes: list[queries.ThemeOverview], number: int) -> ThemesPage:
    pages = max(1, -(-len(themes) // HOME_THEMES))
    return ThemesPage(themes[(number - 1) * HOME_THEMES : number * HOME_THEMES], number, pages)


def form_context(choice: Choice | None = None) -> dict[str, object]:
    """What the subscribe form offers besides the themes: how often, and (folded away) the day and hour, set to the
    operator's defaults, or to what the visitor chose (a form sent again with what to fix)."""
    return {
        "weekdays": list(zip(WEEKDAYS, i18n.weekday_names(), strict=True)),
        "defaults": defaults_from(site().settings),
        "chosen_schedule": choice or Choice(),
    }


@blueprint.get("/")
def home() -> str:
    """The themes and the subscribe form. The first page is rendered once per change of the themes and language and
    kept (only the form's CSRF token differs between visitors); a visitor with a notice waiting gets a page of their
    own, and so do the further pages of a long list of themes."""
    number = page_number(request.args.get("page"))
    stamp = _themes_stamp()
    listed = themes_page(overview(stamp), number)
    if number > listed.pages:
        abort(404)
    if session.get("_flashes") or number > 1:
        return render_template(
            "home.html", listed=listed, themes=listed.themes, chosen=set(), email="", errors=[], **form_context()
        )
    kept = site().home[i18n.current()]
    page = kept.get(stamp)
    if page is None:
        page = kept.put(
            stamp,
            render_template(
                "home.html",
                listed=listed,
                themes=listed.themes,
                chosen=set(),
                email="",
                errors=[],
                csrf_token=lambda: _CSRF_SLOT,
                **form_context(),
            ),
        )
    return page.replace(_CSRF_SLOT, generate_csrf())


def _themes_stamp() -> AllStamp:
    """What the overview is a function of: every theme's revision (what the feed of all practices is made of)."""
    with site().engine.connect() as connection:
        return all_stamp(connection)


def overview(stamp: AllStamp | None = None) -> list[queries.ThemeOverview]:
    """Every theme with its count and newest practices, as the home page shows them: read again only when a theme
    changed (one query of the themes table tells, unless the caller read it), else kept from the last time."""
    stamp = stamp or _themes_stamp()
    found = site().overview.get(stamp)
    if found is None:
        with site().sessions() as db_session:
            found = site().overview.put(stamp, queries.theme_overview(db_session))
    return found


@blueprint.get("/themes/<slug>")
def theme(slug: str) -> str:
    number = page_number(request.args.get("page"))
    with site().sessions() as session:
        found = queries.theme_page(session, slug, number, site().settings.page_size)
    if found.page > found.pages:
        abort(404, f"{found.theme.name} has {found.pages} page(s).")
    return render_template("theme.html", page=found, size=site().settings.page_size)


@blueprint.get("/practices/<uid>")
def practice(uid: str) -> str:
    with site().sessions() as session:
        found = queries.practice_detail(session, uid)
    return render_template("practice.html", practice=found)


@blueprint.get("/healthz")
def health() -> tuple[str, int, dict[str, str]]:
    """For load balancers: 200 when the store answers."""
    with site().sessions() as session:
        session.execute(text("SELECT 1"))
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


# Pages reached by signed links are nobody's business but their holder's: kept out of every crawler's index (each
# also says noindex itself, for the crawlers that fetch them anyway).
ROBOTS = """User-agent: *
Disallow: /confirm/
Disallow: /manage/
Disallow: /unsubscribe/
Disallow: /digests/
Disallow: /feeds/me/
Disallow: /subscribe
"""


@blueprint.get("/robots.txt")
def robots() -> Response:
    response = Response(ROBOTS, content_type="text/plain; charset=utf-8")
    response.cache_control.public, response.cache_control.max_age = True, 86400
    return response


FAVICON = resources.files("digest.web").joinpath("static", "favicon.ico").read_bytes()


@blueprint.get("/favicon.ico")
def favicon() -> Response:
    response = Response(FAVICON, content_type="image/vnd.microsoft.icon")
    response.cache_control.public, response.cache_control.max_age = True, 7 * 86400
    return response
