"""The application factory: settings, the store, CSRF, security headers, the blueprints and the error handlers.
Nobody imports this module but digest.web's __init__ (what the blueprints share is in digest.web.site)."""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from flask import Flask, Response, g, request
from flask_babel import Babel, Domain, get_locale
from flask_compress import Compress
from flask_wtf.csrf import CSRFProtect
from markupsafe import Markup
from werkzeug.middleware.proxy_fix import ProxyFix

from digest import __version__, logs, metrics
from digest.config import Settings, load_settings, require_real_secret
from digest.feeds.documents import feed_filename
from digest.metrics import registry_for
from digest.store import db
from digest.text import i18n
from digest.text.languages import autonym, text_attributes
from digest.text.links import redact_url
from digest.text.markup import sanitize_html
from digest.web.site import LANGUAGE_COOKIE, Site, page_language, route

events = logs.EventLog("digest.web")
# One line per request (its own logger: `digest.web.access`, for those who route or silence it apart).
access = logs.EventLog("digest.web.access")

# Nothing but our own stylesheet, forms that post to us, and no framing: the pages need no script at all.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class DigestFlask(Flask):
    """Flask, logging a view's crash as one event with the route, not the path (Flask's own line names the path,
    token and all)."""

    def log_exception(self, exc_info: Any) -> None:
        events("web.crashed", logging.ERROR, exc_info=exc_info, method=request.method, route=route())


def create_app(settings: Settings | None = None) -> Flask:
    """The web app on the configured store (upgraded first). Outside development (``environment``), a
    ConfigError when ``secret_key`` is the default or too short: it signs every link and form."""
    settings = settings or load_settings()
    if settings.environment != "development":
        require_real_secret(settings, "starting the web app")
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)

    app = DigestFlask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="digest_session",
        # The CSRF token lives as long as the page's session, so a form left open for hours still posts.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=64 * 1024,  # the API's bodies too: a larger one is a 413 problem
        # Pages over 1 KB, brotli or gzip as the client prefers (the feeds compress and cache their own).
        COMPRESS_REGISTER=False,
        COMPRESS_MIN_SIZE=1024,
        COMPRESS_ALGORITHM=["br", "gzip"],
        COMPRESS_MIMETYPES=["text/html", "text/css", "text/plain", "application/json", "image/svg+xml"],
    )
    app.extensions["digest"] = Site(settings, db.session_factory(engine), engine, registry_for(engine))
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    # Pages in the visitor's or the subscriber's language, from the catalogs the mails read too (one loader). The
    # language is chosen first of all, before CSRF's check: its refusal (an expired form) is a page in it too.
    babel = Babel(app, locale_selector=page_language, default_locale=settings.default_language)
    babel.domain_instance = _Catalogs()
    app.before_request(_language)
    # The language of the moment is the thread's: a request leaves it as it found it (English), so nothing run next
    # on that thread (another app's request, a command in the same process) speaks this visitor's language.
    app.teardown_request(lambda _error: i18n.set_current(i18n.DEFAULT))
    csrf = CSRFProtect(app)

    from digest.web import errors, feeds, operator, pages, people, rest

    app.register_blueprint(pages.blueprint)
    app.register_blueprint(operator.blueprint)
    app.register_blueprint(feeds.blueprint)
    app.register_blueprint(people.blueprint)
    app.register_blueprint(rest.blueprint)
    # RFC 8058: a mail provider's one-click POST carries no cookie and no token but the link's own.
    csrf.exempt(people.one_click)
    # The API is called by programs with a token in a header, never with the browser's cookies: no CSRF to fear.
    csrf.exempt(rest.blueprint)

    compress = Compress(app)

    def compressed(response: Response) -> Response:
        # BREACH: a page that could carry a secret beside text an attacker chose is sent as it is: an answer to
        # a POST (it may echo the form, beside the CSRF token) and a private page (a signed link is in it).
        if request.method not in ("GET", "HEAD") or "no-store" in response.headers.get("Cache-Control", ""):
            return response
        if request.blueprint == "feeds":  # gzipped once, cached with the document (digest.feeds.cache)
            return response
        if request.blueprint == "rest":  # BREACH: an API answer reflects its query (?prefix=) beside private data
            return response
        return compress.after_request(response)

    app.after_request(compressed)
    app.after_request(_security_headers)
    app.before_request(_started)
    app.after_request(_language_kept)
    app.after_request(_observed)  # registered last, run first: sees the answer before compression
    errors.register(app)
    app.context_processor(_template_globals)
    app.jinja_env.globals["feed_filename"] = feed_filename
    app.jinja_env.filters["redact_url"] = redact_url
    app.jinja_env.filters["text_attributes"] = lambda tag: Markup(text_attributes(tag))
    # Dates as the page's language writes them (Babel): a stored ISO day, a day, a local date and time.
    app.jinja_env.filters["short_day"] = lambda iso: i18n.short_day(date.fromisoformat(str(iso)[:10]))
    app.jinja_env.filters["day"] = i18n.day
    app.jinja_env.filters["when"] = i18n.when
    # Summary HTML was sanitised at ingest; cleaning it again keeps a bad row from reaching a page.
    app.jinja_env.filters["sanitized"] = lambda html: Markup(sanitize_html(str(html)))
    return app


class _Catalogs(Domain):  # type: ignore[misc]
    """Flask-Babel's translations for a request: digest.text.i18n's catalog of the page's language."""

    def get_translations(self) -> Any:
        return i18n.translations(str(get_locale() or i18n.DEFAULT))


def _started() -> None:
    g.started = time.perf_counter()


# What answers in no language: feeds (their entries keep their own), health checks, files, metrics.
_WORDLESS = frozenset({"static", "pages.health", "pages.favicon", "operator.metrics"})


def _wordless() -> bool:
    return request.blueprint == "feeds" or request.endpoint in _WORDLESS


def _language() -> None:
    """What the domain says to this request (a refusal, a notice) in the page's language."""
    if _wordless():
        i18n.set_current(i18n.DEFAULT)
        return
    i18n.set_current(str(get_locale() or i18n.DEFAULT))


# Every language offered by the switcher, by its own name.
SWITCHER = [(code, autonym(code)) for code in i18n.LANGUAGES]


def _template_globals() -> dict[str, Any]:
    return {"version": __version__, "page_language": i18n.current(), "switcher": SWITCHER}


def _language_kept(response: Response) -> Response:
    """A language picked with the switcher is kept in a cookie; public pages vary by what chooses theirs."""
    if _wordless():
        return response
    picked = request.args.get("lang")
    if picked:
        try:
            # Kept as it is shown: "FR" and "fr-CA" show French, so French is kept (one reading, i18n.supported).
            kept = i18n.supported(picked)
        except i18n.UnknownLanguage:
            kept = None
        if kept:
            response.set_cookie(LANGUAGE_COOKIE, kept, max_age=365 * 86400, samesite="Lax", secure=request.is_secure)
    if response.mimetype == "text/html":
        response.vary.update(("Accept-Language", "Cookie"))
    return response


def _observed(response: Response) -> Response:
    """The access log's line and this request's metrics, by route pattern: never a path (paths carry tokens)."""
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    rule = request.url_rule
    # An unmatched path is not a label: anyone could make up as many as they like.
    label = rule.rule if rule is not None else "<unmatched>"
    metrics.WEB_REQUESTS.labels(label, str(response.status_code)).inc()
    metrics.WEB_SECONDS.labels(label).observe(seconds)
    access(
        "web.request",
        method=request.method,
        route=route()[:200],
        status=response.status_code,
        ms=round(seconds * 1000, 2),
        bytes=response.content_length,
    )
    return response


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    # Pages under a signed link must not hand the link to the next site in a Referer.
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
