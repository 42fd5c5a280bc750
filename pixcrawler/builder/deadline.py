"""A wall-clock deadline on a whole HTTP exchange: connect, TLS, headers and body.

httpx's timeouts bound each socket operation, not their sum: a server that sends one
byte of its headers (or body) just within every read timeout holds a crawl, and a
worker slot, for as long as it likes. Here every socket operation of the client is
given at most the time left until the calling thread's deadline, and none is started
once it has passed, so ``CRAWL_TOTAL_TIMEOUT`` holds however the server trickles.

The deadline is a context variable: each thread (each download of a concurrent batch)
has its own, and a pooled keep-alive connection obeys whichever download is using it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import typing
from collections.abc import Iterator
from contextvars import ContextVar

import httpcore
import httpx

_deadline: ContextVar[float | None] = ContextVar("pixcrawler_http_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Bound every socket operation of this thread's requests to *seconds* from now."""
    at = time.monotonic() + seconds
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)


def expired() -> bool:
    remaining = left()
    return remaining is not None and remaining <= 0


def left() -> float | None:
    """Seconds until this thread's deadline (None: it has none)."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the download's total time limit has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("crawls never use a Unix socket")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


#: Connection pools one transport spreads its requests over (see :class:`_Pools`).
POOLS = 8


class _Pools(httpcore.ConnectionPool):
    """Several httpcore pools behind one, each request sent through the next in turn.

    httpcore's pool looks through all its connections and all waiting requests for
    every request and every response closed, under one lock, so its CPU grows with the
    square of the downloads in flight. Measured with 160 downloads in flight in one
    process (20 batch tasks of 8): 2.0 ms of CPU per image in that scan alone, against
    0.15 ms with 16 in flight. Each of the pools here holds a share of the connections
    (keep-alive works within it), so each scan is over a share.
    """

    def __init__(self, pools: list[httpcore.ConnectionPool]) -> None:
        # Not super().__init__: this pool holds no connections of its own.
        self._pools = pools
        self._turn = itertools.count()
        self._connections = []

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        return self._pools[next(self._turn) % len(self._pools)].handle_request(request)

    @property
    def connections(self) -> list[httpcore.ConnectionInterface]:
        return [c for pool in self._pools for c in pool.connections]

    def close(self) -> None:
        for pool in self._pools:
            pool.close()


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pools on the deadline-keeping backend.

    httpx builds its pool without a way to choose the network backend, so the pool is
    rebuilt here with the same arguments plus the backend (httpx 0.28); the unit tests
    of the total timeout fail if a later httpx stops using it. It is rebuilt as
    :data:`POOLS` pools sharing one TLS context, each with the given limits (httpcore
    counts every connection of a pool against its keep-alive limit, idle or not, so a
    share of the limit would close connections that are about to be reused).
    """

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        ssl_context = httpx.create_ssl_context(trust_env=False)
        self._pool = _Pools(
            [
                httpcore.ConnectionPool(
                    ssl_context=ssl_context,
                    max_connections=limits.max_connections,
                    max_keepalive_connections=limits.max_keepalive_connections,
                    keepalive_expiry=limits.keepalive_expiry,
                    network_backend=_DeadlineBackend(),
                )
                for _ in range(POOLS)
            ]
        )
