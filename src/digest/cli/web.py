"""`digest serve`: the web app under waitress, a production WSGI server."""

from __future__ import annotations

import errno
import signal
from types import FrameType

import click

from digest import logs
from digest.cli.app import App, cli, pass_app
from digest.errors import DigestError


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Requests served at once.")
@pass_app
def serve(app: App, host: str, port: int, threads: int) -> None:
    """Serve the web app: pages, subscribe, manage, one-click unsubscribe and the feeds.

    Put it behind a reverse proxy that terminates TLS and set trusted_proxies to the number of proxies in front
    (their X-Forwarded-For and X-Forwarded-Proto are then believed). Several processes or hosts may serve one
    database: rate limits are counted in the store.

    Example: DIGEST_BASE_URL=https://digest.example.org DIGEST_SECRET_KEY=... digest serve --port 8000
    """
    import waitress.server  # only this command needs the web stack

    from digest.logs import configure
    from digest.web import create_app

    configure()
    web = create_app(app.settings)
    try:
        # The proxies' headers reach the app only when some are trusted: ProxyFix (see create_app) then believes
        # exactly `trusted_proxies` hops of them. Waitress clearing them first would leave every client looking
        # like the proxy (one rate-limit bucket for the whole site) and every request like plain http.
        server = waitress.server.create_server(
            web,
            host=host,
            port=port,
            threads=threads,
            ident="digest",
            clear_untrusted_proxy_headers=not app.settings.trusted_proxies,
        )
    except OSError as e:
        where = f"cannot listen on {host}:{port}"
        if e.errno == errno.EADDRINUSE:
            raise DigestError(f"{where}: the port is in use", "stop what listens there, or give another --port") from e
        if e.errno == errno.EACCES:
            hint = "ports below 1024 need privileges: use a port above 1024 behind the proxy"
            raise DigestError(f"{where}: permission denied", hint) from e
        raise DigestError(f"{where}: {e.strerror or e}", "check --host and --port") from e
    _keep_alive_without_a_body(server)
    bound = f"http://{host}:{getattr(server, 'effective_port', port)}"
    click.echo(f"serving {app.settings.base_url} on {bound} ({threads} threads)", err=True)
    logs.event("web.started", listen=bound, threads=threads)
    # SIGTERM (systemd's stop) ends the loop as Ctrl-C does: the answers in progress are finished, then one line.
    signal.signal(signal.SIGTERM, _interrupt)
    stopped_by = ""
    try:
        server.run()
    except KeyboardInterrupt:
        stopped_by = _stopping.get("signal", "SIGINT")
    finally:
        server.close()
        logs.event("web.stopped", signal=stopped_by)


_stopping: dict[str, str] = {}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _stopping["signal"] = signal.Signals(signum).name
    raise KeyboardInterrupt


def _keep_alive_without_a_body(server: object) -> None:
    """Waitress 3 closes the connection after any HTTP/1.1 answer without a Content-Length, a 304 or a 204 too,
    which have no body to delimit (RFC 9112 §6.3): feed readers polling with validators, whose most common answer
    is a 304, would open a connection for every poll. Its channels here use a task that keeps those open."""
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer
    from waitress.task import WSGITask

    class Task(WSGITask):  # type: ignore[misc]
        _bodiless = False

        def build_response_header(self) -> bytes:
            connection = self.request.headers.get("CONNECTION", "").lower()
            self._bodiless = self.version == "1.1" and not self.has_body and connection != "close"
            try:
                header: bytes = super().build_response_header()
                return header
            finally:
                self._bodiless = False

        def set_close_on_finish(self) -> None:
            if not self._bodiless:  # a bodiless answer is complete at its headers: nothing forces a close
                super().set_close_on_finish()

    class Channel(HTTPChannel):  # type: ignore[misc]
        task_class = Task

    listening = [server, *getattr(server, "map", {}).values()]
    for each in listening:
        if isinstance(each, BaseWSGIServer):
            each.channel_class = Channel
