"""The Atom feeds over HTTP, rendered from the store, with validators for conditional GET."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, abort, request

from digest.feeds.atom import feed_by_filename
from digest.web.site import site

blueprint = Blueprint("feeds", __name__)


@blueprint.get("/feeds/<filename>")
def feed(filename: str) -> Response:
    """``<slug>.atom`` or ``all.atom``: 304 when If-None-Match or If-Modified-Since says the reader has it."""
    if not filename.endswith(".atom"):
        abort(404)
    with site().sessions() as session:
        document = feed_by_filename(session, site().settings, filename)
    if document is None:
        abort(404, "There is no feed by that name.")
    response = Response(document.data, content_type="application/atom+xml; charset=utf-8")
    # Strong: the same bytes give the same tag, whichever server process renders them.
    response.set_etag(hashlib.sha256(document.data).hexdigest()[:32])
    response.last_modified = document.updated
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.make_conditional(request)
    return response
