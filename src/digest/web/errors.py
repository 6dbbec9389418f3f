"""Every error a view raises, answered in one place (views do not catch errors to choose an answer):

- an HTTP error (abort, an unknown route) -> its status, on the site's page;
- an expired form -> 400; a thing that is not there (NotFoundError) -> 404;
- a refused link (TokenError) -> 410 when it expired, else 404, its reason logged, the token never;
- the store or the mail server out of reach -> 503 with Retry-After (nothing was done; trying again later works);
  only a store that cannot answer (OperationalError, InterfaceError: down, locked, a connection lost, a
  serialisation failure) is "unavailable": a data or integrity error is a bug, answered 500 and logged as one;
- any other refusal (a bad address, an unknown theme, a schedule that cannot be) -> 400 with what to fix.
Each is logged with the route, never the path (paths carry tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from digest import logs
from digest.errors import DigestError, NotFoundError, TransportError
from digest.subscriptions.tokens import TokenError
from digest.text.i18n import _
from digest.web import limits
from digest.web.site import client, message_page, route

events = logs.EventLog("digest.web")

# Seconds a client is asked to wait before trying again when the store or the mail server is out of reach.
RETRY_AFTER = {"store": 30, "mail": 120}


def register(app: Flask) -> None:
    from digest.web import rest

    app.extensions["digest.refusals"] = limits.Refusals()
    app.register_error_handler(CSRFError, _expired_form)
    app.register_error_handler(HTTPException, _api_or(_http_error))
    app.register_error_handler(NotFoundError, _api_or(_not_found))
    app.register_error_handler(TokenError, _refused_link)
    app.register_error_handler(TransportError, _api_or(_mail_unavailable))
    app.register_error_handler(OperationalError, _api_or(_store_unavailable))
    app.register_error_handler(InterfaceError, _api_or(_store_unavailable))
    app.register_error_handler(DigestError, _api_or(_refused))
    app.register_error_handler(rest.ProblemError, _api_or(_refused))
    app.register_error_handler(rest._Invalid, _api_or(_refused))


def _api_or(page: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Under /api/, an error is answered as RFC 9457 problem+json (digest.web.rest); elsewhere, as a page."""

    def answer(error: Any) -> Any:
        from digest.web import rest

        if request.path.startswith("/api/"):
            if isinstance(error, (OperationalError, InterfaceError)):
                events("web.store_unavailable", logging.ERROR, route=route(), error=type(error).__name__)
                response = rest.problem(503, "Service Unavailable", "the store cannot answer now: try in a minute")
                response.headers["Retry-After"] = str(RETRY_AFTER["store"])
                return response
            found = rest.answered(error)
            if found is not None:
                if found.status_code >= 500:
                    events("web.error", logging.ERROR, status=found.status_code, route=route())
                return found
        return page(error)

    return answer


def _expired_form(error: CSRFError) -> Any:
    return message_page(400, _("This form has expired"), _("Reload the page and send the form again."))


def _http_error(error: HTTPException) -> Any:
    if error.code is None or error.code < 400:
        return error
    if error.code >= 500:
        events("web.error", logging.ERROR, status=error.code, route=route())
    # A view's abort() says what happened in the page's language; werkzeug's own words (an unknown route) are English.
    texts = _http_texts(error.code)
    own = bool(error.description) and error.description != type(error).description
    message = error.description if own else (texts[1] if texts else error.description)
    return message_page(error.code, texts[0] if texts else error.name, message or "")


def _http_texts(code: int) -> tuple[str, str] | None:
    """The title and the explanation of an HTTP error a visitor may meet, in the page's language."""
    texts = {
        400: (_("Bad request"), _("The request could not be read. Go back and try again.")),
        404: (_("Not found"), _("There is no page at this address. The home page lists every theme.")),
        405: (_("Not allowed"), _("This address does not answer that kind of request.")),
        413: (_("Too large"), _("What was sent is too large for this form.")),
        500: (_("Something went wrong"), _("The page could not be made. Try again in a minute.")),
    }
    return texts.get(code)


def _not_found(error: NotFoundError) -> Any:
    message = str(error)
    return message_page(404, _("Not found"), message[:1].upper() + message[1:] + ".", hint=error.hint)


def _refused_link(error: TokenError) -> Any:
    current_app.extensions["digest.refusals"].refused(client(), route(), error.reason)
    if error.expired:
        return message_page(410, _("This link has expired"), _("Subscribe again on the home page to get a new one."))
    return message_page(
        404,
        _("This link does not work"),
        _(
            "This link does not work here. It may be from an older mail, or only part of it reached this page. The "
            "links in your newest digest work; or subscribe again on the home page."
        ),
    )


def _mail_unavailable(error: TransportError) -> Any:
    return _unavailable("mail", str(error), _("The mail could not be sent"), _("Please try again in a few minutes."))


def _store_unavailable(error: DBAPIError) -> Any:
    reason = " ".join(str(error.orig).split())[:300]
    return _unavailable(
        "store", reason, _("Temporarily unavailable"), _("The service cannot answer now. Try in a minute.")
    )


def _unavailable(what: str, reason: str, title: str, message: str) -> Any:
    """503 with Retry-After: what was out of reach is logged, the person is asked to come back."""
    events(f"web.{what}_unavailable", logging.ERROR, route=route(), error=reason)
    body, status, headers = message_page(503, title, message)
    return body, status, headers | {"Retry-After": str(RETRY_AFTER[what])}


def _refused(error: DigestError) -> Any:
    events("web.refused", logging.WARNING, route=route(), error=str(error))
    return message_page(400, _("That did not work"), str(error), hint=error.hint)
