"""The web app (Flask): theme and practice pages, subscribe with double opt-in, manage and leave by signed
link, one-click unsubscribe (RFC 8058), the web view of a digest, and the Atom feeds over HTTP.

``create_app()`` is the application factory; ``digest serve`` runs it under waitress.
"""

from digest.web.app import create_app

__all__ = ["create_app"]
