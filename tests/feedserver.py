"""A real HTTP server on loopback that serves feeds the way sites do, and misbehaves on request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What one path answers. `fail_first` 503s come before the real answer; `delay` stalls every answer."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    fail_first: int = 0
    delay: float = 0.0
    redirect_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds between bytes of the body: a server that trickles (each read is quick, the whole never ends).
    trickle: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
                    route = server.routes.get(self.path)
                    failing = route is not None and route.fail_first > 0
                    if failing and route is not None:
                        route.fail_first -= 1
                if route is None:
                    self.answer(404, b"not found", "text/plain")
                    return
                if route.delay:
                    time.sleep(route.delay)
                if failing:
                    self.answer(503, b"busy", "text/plain")
                elif route.redirect_to:
                    self.answer(302, b"", "text/plain", {"Location": route.redirect_to})
                elif route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.answer(304, b"", "", {"ETag": route.etag})
                elif route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified:
                    self.answer(304, b"", "")
                else:
                    extra = dict(route.headers)
                    if route.etag:
                        extra["ETag"] = route.etag
                    if route.last_modified:
                        extra["Last-Modified"] = route.last_modified
                    self.answer(route.status, route.body, route.content_type, extra)

            def answer(
                self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    if content_type:
                        self.send_header("Content-Type", content_type)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    if status != 304:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if status != 304 and route_trickle(self.path):
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(route_trickle(self.path))
                    elif status != 304:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        def route_trickle(path: str) -> float:
            route = server.routes.get(path)
            return route.trickle if route is not None else 0.0

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, **route: object) -> str:
        self.routes[path] = Route(**route)  # type: ignore[arg-type]
        return self.url(path)

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]


@contextmanager
def running() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)
