"""HTTP/1.1 GETs to an address the SSRF guard checked, on kept-alive connections.

Built on the standard library's ``http.client`` rather than httpx, by measurement: with
96 downloads in flight in one process (benchmarks/crawl.py's server), httpx with its
connection pool spent 0.7 ms of CPU per GET and ``http.client`` 0.15 ms. A crawl worker
is one process of threads, so its CPU per image is its ceiling (docs/BENCHMARKS.md, (c)).
A crawl needs only GET over HTTP/1.1 to one address at a time, which is what this does:

- the connection goes to the checked address; the ``Host`` header, the TLS server name
  and certificate check, and Basic credentials come from the URL's name (target.py);
- every socket operation obeys the thread's deadline (deadline.py), so
  ``CRAWL_TOTAL_TIMEOUT`` bounds a server that trickles its headers or body;
- connections are kept alive per (scheme, address, port, server name) and shared by
  the worker's threads; one that the server closed while idle is replaced once;
- certificates are checked against the system's CA store; no proxy from the
  environment is ever used; no content coding is asked for (images are stored as sent).

A malformed response is a :class:`ProtocolError`, a ``ConnectionError``: transient, as a
broken connection is.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from threading import Lock
from types import TracebackType
from typing import Any

from pixcrawler.builder.deadline import clamp
from pixcrawler.builder.target import Target

#: Status codes that redirect a GET (RFC 9110 15.4), as browsers and httpx count them.
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 we can read (a bad status line, huge headers)."""


class _Socket(socket.socket):
    """A TCP socket whose every read and write waits at most until the deadline."""

    op_timeout: float | None = None

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self.settimeout(clamp(self.op_timeout))
        return super().recv_into(*args, **kwargs)

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        self.settimeout(clamp(self.op_timeout))
        super().sendall(*args, **kwargs)


class _TLSSocket(_Socket, ssl.SSLSocket):
    """The same bound over TLS (the context's ``sslsocket_class``): _Socket's methods
    come first, then SSLSocket's read and write through the TLS layer."""


def tls_context() -> ssl.SSLContext:
    """Certificates and names checked against the system's CA store (ca-certificates)."""
    context = ssl.create_default_context()
    context.sslsocket_class = _TLSSocket
    return context


Key = tuple[str, str, int, str]


class _Connection(http.client.HTTPConnection):
    def __init__(
        self, key: Key, connect_timeout: float, read_timeout: float, tls: ssl.SSLContext | None
    ) -> None:
        _, address, port, self.server_name = key
        super().__init__(address, port, timeout=read_timeout)
        self.key = key
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.idle_since = 0.0

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock: socket.socket = _Socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(clamp(self.connect_timeout))
            sock.connect((self.host, self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock.settimeout(clamp(self.connect_timeout))  # the handshake
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
        except BaseException:
            sock.close()
            raise
        sock.op_timeout = self.timeout  # type: ignore[attr-defined]
        self.sock = sock


class Response:
    """A response whose body is read as it is needed; close it (or use ``with``)."""

    def __init__(self, client: Client, conn: _Connection, raw: http.client.HTTPResponse) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self._raw = raw
        self.status_code = raw.status
        self.headers = raw.headers

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "location" in self.headers

    def iter_bytes(self, size: int) -> Iterator[bytes]:
        while chunk := self._read(size):
            yield chunk

    def _read(self, size: int) -> bytes:
        try:
            return self._raw.read(size)
        except http.client.IncompleteRead as exc:
            raise ProtocolError(f"the response ended early: {exc}") from None
        except http.client.HTTPException as exc:
            raise ProtocolError(f"bad response body: {exc!r}") from None

    def close(self) -> None:
        """Give the connection back if the whole body was read, else hang up."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._raw.isclosed() and conn.sock is not None:
            self._client.release(conn)
        else:
            self._raw.close()
            conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Client:
    """Kept-alive connections shared by a worker's threads; one per process (fetch.py)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        user_agent: str,
        max_idle: int = 100,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.user_agent = user_agent
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._tls: ssl.SSLContext | None = None
        self._idle: dict[Key, list[_Connection]] = {}
        self._count = 0
        self._lock = Lock()

    def get(self, target: Target, address: str, accept: str = "image/*") -> Response:
        """GET *target* from *address*: the name's Host, TLS name and credentials kept."""
        headers = {
            "Host": target.host_header,
            "User-Agent": self.user_agent,
            "Accept": accept,
        }
        if target.auth is not None:
            pair = f"{target.auth[0]}:{target.auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        key = (target.scheme, address, target.port, target.server_name)
        conn = self._take(key)
        reused = conn is not None
        if conn is None:
            conn = self._open(key)
        try:
            raw = self._exchange(conn, target.path, headers)
        except (ConnectionResetError, BrokenPipeError):  # RemoteDisconnected is one too
            if not reused:
                raise
            # The server closed the idle connection as we reused it; a GET is safe to
            # send again, once, on a new one.
            conn = self._open(key)
            raw = self._exchange(conn, target.path, headers)
        return Response(self, conn, raw)

    def _exchange(
        self, conn: _Connection, path: str, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        try:
            conn.request("GET", path, headers=headers)
            return conn.getresponse()
        except BaseException as exc:
            conn.close()
            # RemoteDisconnected is an HTTPException and a ConnectionResetError: it stays
            # itself, so that get() sends the request again on a new connection.
            if isinstance(exc, http.client.HTTPException) and not isinstance(exc, ConnectionError):
                raise ProtocolError(f"bad response from the server: {exc!r}") from None
            raise

    def _open(self, key: Key) -> _Connection:
        tls = None
        if key[0] == "https":
            with self._lock:
                if self._tls is None:
                    self._tls = tls_context()
                tls = self._tls
        return _Connection(key, self.connect_timeout, self.read_timeout, tls)

    def _take(self, key: Key) -> _Connection | None:
        now = time.monotonic()
        stale: list[_Connection] = []
        found = None
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                self._count -= 1
                if now - conn.idle_since < self.keepalive_expiry:
                    found = conn
                    break
                stale.append(conn)
            if idle is not None and not idle:
                del self._idle[key]
        for conn in stale:
            conn.close()
        return found

    def release(self, conn: _Connection) -> None:
        now = conn.idle_since = time.monotonic()
        expired: list[_Connection] = []
        with self._lock:
            if self._count >= self.max_idle:  # make room: drop what has expired anywhere
                for key, idle in list(self._idle.items()):
                    keep = [c for c in idle if now - c.idle_since < self.keepalive_expiry]
                    expired += [c for c in idle if c not in keep]
                    if keep:
                        self._idle[key] = keep
                    else:
                        del self._idle[key]
                self._count -= len(expired)
            if self._count < self.max_idle:
                self._idle.setdefault(conn.key, []).append(conn)
                self._count += 1
            else:
                expired.append(conn)
        for old in expired:
            old.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._count = self._idle, {}, 0
        for conns in idle.values():
            for conn in conns:
                conn.close()
