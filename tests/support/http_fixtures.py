"""A loopback HTTP server the tests start themselves: the only thing crawls may reach.

Routes are added per test under unique paths, and every request is counted per path, so
a test can prove how many times a worker really fetched a URL (retries included).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.harness import TlsFiles


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
    #: Trickle the response one byte per this many seconds: the headers (``"headers"``)
    #: or the body (``"body"``), each byte well within any read timeout.
    drip: float = 0.0
    drip_part: str = "body"
    #: HTTP Basic credentials the route insists on (401 without them).
    auth: tuple[str, str] | None = None
    #: Close a kept-alive connection after this response without saying so (as a server
    #: does whose idle timeout ends just as the client reuses the connection).
    hang_up: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer

    def do_GET(self) -> None:
        host = self.headers.get("Host", "")
        self.server.started(host)
        try:
            self._get()
        finally:
            self.server.finished(host)

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        route, served = self.server.hit(path)
        if route is None:
            self.send_error(404)
            return
        self.server.record(path, dict(self.headers.items()))
        status = route.statuses[min(served, len(route.statuses) - 1)]
        if route.delay:
            time.sleep(route.delay)
        if route.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(route.auth).encode()).decode()
            if self.headers.get("Authorization") != expected:
                status = 401
        if route.drip:
            self._drip(route, status)
            return
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
        if route.hang_up:
            self.close_connection = True

    def _drip(self, route: Route, status: int) -> None:
        """The whole response byte by byte; the slow part sleeps between bytes."""
        head = (
            f"HTTP/1.0 {status} OK\r\nContent-Type: {route.content_type}\r\n"
            f"Content-Length: {len(route.body)}\r\n\r\n"
        ).encode()
        path = self.path.split("?", 1)[0]
        try:
            for part, data in (("headers", head), ("body", route.body)):
                if part != route.drip_part:
                    self.wfile.write(data)
                    self.wfile.flush()
                    continue
                for byte in data:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(route.drip)
        except (BrokenPipeError, ConnectionResetError):
            self.server.record_end(path, "cut off")
        else:
            self.server.record_end(path, "sent")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest output is for failures."""


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"


class LoopbackHTTPServer(ThreadingHTTPServer):
    """HTTP/1.0 (a connection per request) unless *keep_alive*; HTTPS with *tls*."""

    daemon_threads = True

    def __init__(
        self, host: str = "127.0.0.1", keep_alive: bool = False, tls: TlsFiles | None = None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _KeepAliveHandler if keep_alive else _Handler)
        self.host = host
        self.scheme = "http"
        #: Connections accepted, and the TLS server names clients asked for (SNI).
        self.connections = 0
        self.server_names: list[str | None] = []
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            context.sni_callback = self._sni
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self._routes: dict[str, Route] = {}
        self._hits: Counter[str] = Counter()
        self._seen: dict[str, list[dict[str, str]]] = {}
        self._ends: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        #: Per Host header: requests in flight now, the most ever at once, and when each
        #: request arrived (the politeness tests' measurements).
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._arrivals: dict[str, list[float]] = {}

    def _sni(self, _conn: object, name: str | None, _context: object) -> None:
        self.server_names.append(name)

    def get_request(self) -> tuple[socket.socket, Any]:
        request = super().get_request()  # the TLS handshake too: a refused one raises
        with self._lock:
            self.connections += 1
        return request

    def started(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] += 1
            self._max_in_flight[host] = max(self._max_in_flight[host], self._in_flight[host])
            self._arrivals.setdefault(host, []).append(time.monotonic())

    def finished(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] -= 1

    def max_in_flight(self, host: str) -> int:
        """The most requests with this Host header the server ever had at once."""
        with self._lock:
            return self._max_in_flight[host]

    def arrivals(self, host: str) -> list[float]:
        """When each request with this Host header arrived (monotonic seconds), in order."""
        with self._lock:
            return list(self._arrivals.get(host, []))

    @property
    def host_header(self) -> str:
        return self.base.split("://", 1)[1]

    def put(self, path: str, route: Route) -> str:
        """Register *route* at exactly *path* (``/robots.txt``) and return its full URL."""
        with self._lock:
            self._routes[path] = route
        return self.base + path

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._seen.setdefault(path, []).append(headers)

    def record_end(self, path: str, how: str) -> None:
        with self._lock:
            self._ends.setdefault(path, []).append(how)

    def ends(self, url: str) -> list[str]:
        """How each trickled response ended: ``sent`` whole, or ``cut off`` by the client."""
        with self._lock:
            return list(self._ends.get(_path_of(url), []))

    def requests(self, url_or_path: str) -> list[dict[str, str]]:
        """The headers of every request to the route, in order."""
        with self._lock:
            return list(self._seen.get(_path_of(url_or_path), []))

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


def _path_of(url_or_path: str) -> str:
    return "/" + url_or_path.split("/", 3)[-1] if "://" in url_or_path else url_or_path


@contextlib.contextmanager
def serving(
    host: str = "127.0.0.1", keep_alive: bool = False, tls: TlsFiles | None = None
) -> Iterator[LoopbackHTTPServer]:
    server = LoopbackHTTPServer(host, keep_alive, tls)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
