"""What the worker tells its service manager and its monitoring: systemd's notify protocol (READY=1 once it runs,
WATCHDOG=1 while it is healthy, STOPPING=1 on the way out) and, on ``metrics_port``, its Prometheus metrics.

The notify protocol is one datagram on the AF_UNIX socket named by $NOTIFY_SOCKET (an abstract one when the name
starts with "@"); sending it by hand is the whole protocol, so no library is needed for it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine

from digest import logs
from digest.config import Settings
from digest.metrics import authorized, exposition, registry_for

events = logs.EventLog("digest.worker")


class Notifier:
    """systemd's sd_notify, for a Type=notify unit; does nothing when $NOTIFY_SOCKET is not set."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + name[1:] if name.startswith("@") else name
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # The watchdog is ours unless it names another process.
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1_000_000 if usec.isdigit() and mine and self.address else 0.0
        self._stop = threading.Event()

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:  # the manager gone: nothing to tell, nothing to stop for
            events("notify.failed", 30, error=f"{type(e).__name__}: {e}")

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self._stop.set()
        self.send("STOPPING=1", "STATUS=stopping")

    def feed_while(self, healthy: Callable[[], bool]) -> None:
        """Send WATCHDOG=1 at half the watchdog's interval for as long as ``healthy()`` says so: a worker that
        hangs, or has lost its store for good, stops feeding it and systemd restarts it."""
        if not self.watchdog:
            return

        def beat() -> None:
            while not self._stop.wait(self.watchdog / 2):
                if healthy():
                    self.send("WATCHDOG=1")

        threading.Thread(target=beat, name="watchdog", daemon=True).start()


def serve_metrics(settings: Settings, engine: Engine) -> Any | None:
    """The worker's /metrics on metrics_host:metrics_port (waitress, in a thread of its own), or None when no port
    is set. Answers only a request that carries metrics_token as a Bearer token (else 404)."""
    if not settings.metrics_port:
        return None
    from waitress.server import create_server

    registry = registry_for(engine)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or not authorized(
            environ.get("HTTP_AUTHORIZATION"), settings.metrics_token
        ):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found\n"]
        body, content_type = exposition(registry, environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")])
        return [body]

    server = create_server(app, host=settings.metrics_host, port=settings.metrics_port, threads=2)
    threading.Thread(target=server.run, name="metrics", daemon=True).start()
    events("metrics.serving", address=f"{settings.metrics_host}:{settings.metrics_port}")
    return server
