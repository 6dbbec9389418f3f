"""The Atom feeds over HTTP: each theme's, all practices', their RFC 5005 archives, and a subscriber's own.

A request costs one indexed query when the reader has the document (304, answered from the validators before
anything is rendered) and when this process rendered it already (200 from the in-process cache, gzipped when the
client takes it); only a changed document is rendered. Every answer names the document's hubs and itself in
``Link`` headers (WebSub)."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, abort, request, url_for
from werkzeug.http import http_date

from digest.feeds.documents import (
    ALL,
    Document,
    archive_document,
    feed_filename,
    feed_url,
    personal_document,
    public_document,
    render_document,
)
from digest.feeds.jsonfeed import json_path
from digest.feeds.opml import Outline, opml
from digest.store import feeds as store
from digest.store import queries
from digest.subscriptions.tokens import Purpose, read_token
from digest.web.site import page_number, site

blueprint = Blueprint("feeds", __name__)

# Seconds a reader or a cache may keep a document without asking again: a current one changes with an ingest;
# an archive practically never.
FRESH = 300
ARCHIVE_FRESH = 7 * 86400
ATOM = "application/atom+xml; charset=utf-8"
JSON_FEED = "application/feed+json; charset=utf-8"


def atom_name(json_name: str) -> str:
    """The Atom document a JSON Feed's name stands beside: "water.json" -> "water.atom"."""
    return json_name.removesuffix(".json") + ".atom"


@blueprint.get("/feeds/<filename>")
def feed(filename: str) -> Response:
    """``<slug>.atom`` or ``all.atom``, and the JSON Feed of each (``<slug>.json``, ``all.json``)."""
    as_json = filename.endswith(".json")
    with site().engine.connect() as connection:
        document = public_document(connection, site().settings, atom_name(filename) if as_json else filename)
    if document is None:
        abort(404, "There is no feed by that name.")
    return _answer(document, FRESH, as_json=as_json)


@blueprint.get("/feeds/archives/<stem>/<number>.atom")
@blueprint.get("/feeds/archives/<stem>/<number>.json", endpoint="archive_json", defaults={"as_json": True})
def archive(stem: str, number: str, as_json: bool = False) -> Response:
    """Archive ``number`` (1: the oldest) of a feed (RFC 5005), or its JSON Feed. One URL a document: werkzeug's
    int converter would also take "01" and "١"."""
    with site().engine.connect() as connection:
        document = archive_document(connection, site().settings, stem, page_number(number))
    if document is None:
        abort(404, "There is no such archive of a feed.")
    return _answer(document, ARCHIVE_FRESH, as_json=as_json)


@blueprint.get("/feeds/me/<token>.atom")
@blueprint.get("/feeds/me/<token>.json", endpoint="personal_json", defaults={"as_json": True})
def personal(token: str, as_json: bool = False) -> Response:
    """A subscriber's own feed (or its JSON Feed): the practices of their themes, each once. Its link is a secret:
    private to caches, kept out of search engines; a link revoked, erased or for anything else -> 404."""
    feed_key = read_token(site().settings.secret_key, token, Purpose.FEED)
    with site().engine.connect() as connection:
        document = personal_document(connection, site().settings, feed_key, token)
    if document is None:
        abort(404, "This feed link does not work any more. The manage page of your subscription has the new one.")
    response = _answer(document, FRESH, private=True, as_json=as_json)
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


# OPML 2.0's own description, which its <docs> names.
OPML_DOCS = "http://opml.org/spec2.opml"


@blueprint.get("/feeds.opml")
def feeds_opml() -> Response:
    """Every theme's feed and the feed of all practices, for a feed reader to import at once."""
    settings = site().settings
    with site().sessions() as session:
        themes = queries.themes(session)
    outlines = [Outline("All practices", feed_url(settings, f"{ALL}.atom"), settings.base_url + "/")]
    outlines += [_outline(slug, name) for name, slug in ((t.name, t.slug) for t in themes)]
    return _opml_answer(opml("Practice digest: every feed", settings.feed_author, OPML_DOCS, outlines), private=False)


@blueprint.get("/feeds/me/<token>.opml")
def personal_opml(token: str) -> Response:
    """A subscriber's themes and their own feed: the same secret link as their feed, another document."""
    settings = site().settings
    feed_key = read_token(settings.secret_key, token, Purpose.FEED)
    with site().engine.connect() as connection:
        themes = store.reader_themes(connection, feed_key)
    if themes is None:
        abort(404, "This feed link does not work any more. The manage page of your subscription has the new one.")
    outlines = [Outline("My practices", feed_url(settings, f"me/{token}.atom"), settings.base_url + "/")]
    outlines += [_outline(slug, name) for slug, name in themes]
    response = _opml_answer(opml("Practice digest: my feeds", settings.feed_author, OPML_DOCS, outlines), True)
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _outline(slug: str, name: str) -> Outline:
    settings = site().settings
    page = settings.base_url + url_for("pages.theme", slug=slug)
    return Outline(name, feed_url(settings, feed_filename(slug)), page)


def _opml_answer(data: bytes, private: bool) -> Response:
    response = Response(data, content_type="text/x-opml; charset=utf-8")
    response.set_etag(hashlib.sha256(data).hexdigest()[:32])
    response.cache_control.max_age = FRESH
    if private:
        response.cache_control.private = True
    else:
        response.cache_control.public = True
    response.make_conditional(request)
    return response


def _gzip_etag(etag: str) -> str:
    # A strong validator names one representation: the gzipped bytes have their own.
    return f"{etag}-gzip"


def _answer(document: Document, max_age: int, private: bool = False, as_json: bool = False) -> Response:
    settings = site().settings
    gzip_ok = request.accept_encodings["gzip"] > 0
    # The JSON Feed is another representation of the same document: its own strong validator and cache entry.
    tag = f"{document.etag}-json" if as_json else document.etag
    path = json_path(document.path) if as_json else document.path
    etag = _gzip_etag(tag) if gzip_ok else tag
    # Headers written as text: this is the whole cost of a 304 beside its one query.
    links = [f'<{hub}>; rel="hub"' for hub in settings.hubs if document.kind != "me"]
    headers = {
        "ETag": f'"{etag}"',
        "Last-Modified": http_date(document.modified),
        "Cache-Control": f"{'private' if private else 'public'}, max-age={max_age}",
        "Vary": "Accept-Encoding",
        "Link": ", ".join([*links, f'<{feed_url(settings, path)}>; rel="self"']),
    }
    if _reader_has(tag, document):
        return Response(status=304, headers=headers)
    cache = site().feed_cache
    cached = cache.get(path, tag)
    if cached is None:
        with site().sessions() as session:
            cached = cache.put(path, tag, render_document(session, settings, document, as_json).data)
    if gzip_ok:
        headers["Content-Encoding"] = "gzip"
    content_type = JSON_FEED if as_json else ATOM
    return Response(cached.gzipped if gzip_ok else cached.data, headers=headers, content_type=content_type)


def _reader_has(tag: str, document: Document) -> bool:
    """Whether the request's validators say the reader holds this representation of the document (RFC 9110:
    If-None-Match, compared weakly, and only without it If-Modified-Since)."""
    tags = request.if_none_match
    if tags:
        return tags.star_tag or tags.contains_weak(tag) or tags.contains_weak(_gzip_etag(tag))
    since = request.if_modified_since
    return since is not None and document.modified.replace(microsecond=0) <= since
