"""Public pages: the home page (themes and the subscribe form), theme pages and practice pages."""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort, render_template, request
from sqlalchemy import text

from digest.store import queries
from digest.web.site import site

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def home() -> str:
    with site().sessions() as session:
        themes = queries.theme_overview(session)
    return render_template("home.html", themes=themes, chosen=set(), email="", errors=[])


@blueprint.get("/themes/<slug>")
def theme(slug: str) -> str:
    page = request.args.get("page", "1")
    if not page.isdigit() or int(page) < 1:
        abort(404)
    with site().sessions() as session:
        found = queries.theme_page(session, slug, int(page), site().settings.page_size)
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
