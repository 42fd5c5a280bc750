"""A loopback HTTP server the tests start themselves: the only thing crawls may reach.

Routes are added per test under unique paths, and every request is counted per path, so
a test can prove how many times a worker really fetched a URL (retries included).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    #: Responses served in turn; the last one repeats forever.
    statuses: list[int] = field(default_factory=lambda: [200])
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    #: Stream this many bytes of zeros with no Content-Length (for size caps).
    stream_bytes: int = 0
    #: Send only headers, with this Content-Length, and no body.
    declared_length: int | None = None
    #: Seconds to wait before answering (a slow server keeps a crawl in flight).
    delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route, served = self.server.hit(path)
        if route is None:
            self.send_error(404)
            return
        status = route.statuses[min(served, len(route.statuses) - 1)]
        if route.delay:
            time.sleep(route.delay)
        self.send_response(status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if status >= 300:
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Type", route.content_type)
        if route.declared_length is not None:
            self.send_header("Content-Length", str(route.declared_length))
            self.end_headers()
            return
        if route.stream_bytes:
            self.end_headers()  # HTTP/1.0 without a length: the body ends at close
            chunk = b"\x00" * 65536
            sent = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < route.stream_bytes:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            return
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(route.body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest output is for failures."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._routes: dict[str, Route] = {}
        self._hits: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, route: Route, name: str = "r") -> str:
        """Register *route* under a fresh path and return its full URL."""
        path = f"/{name}-{uuid.uuid4().hex}"
        with self._lock:
            self._routes[path] = route
        return self.base + path

    def hit(self, path: str) -> tuple[Route | None, int]:
        with self._lock:
            served = self._hits[path]
            self._hits[path] += 1
            return self._routes.get(path), served

    def hits(self, url: str) -> int:
        path = url.removeprefix(self.base)
        with self._lock:
            return self._hits[path]


@contextlib.contextmanager
def serving() -> Iterator[LoopbackHTTPServer]:
    server = LoopbackHTTPServer()
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
