"""`digest serve`: the web app under waitress, a production WSGI server."""

from __future__ import annotations

import click

from digest.cli.app import App, cli, handle_errors, pass_app


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Requests served at once.")
@pass_app
@handle_errors
def serve(app: App, host: str, port: int, threads: int) -> None:
    """Serve the web app: pages, subscribe, manage, one-click unsubscribe and the feeds.

    Put it behind a reverse proxy that terminates TLS (set trusted_proxies). Several processes or hosts may
    serve one database: rate limits are counted in the store.

    Example: digest serve --host 0.0.0.0 --port 8000
    """
    import waitress  # only this command needs the web stack

    from digest.logs import configure
    from digest.web import create_app

    configure()
    web = create_app(app.settings)
    click.echo(f"serving {app.settings.base_url} on http://{host}:{port} ({threads} threads)", err=True)
    waitress.serve(web, host=host, port=port, threads=threads, ident="digest", clear_untrusted_proxy_headers=True)
