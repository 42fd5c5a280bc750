"""A wall-clock deadline on a whole HTTP exchange: connect, TLS, headers and body.

A socket timeout bounds each socket operation, not their sum: a server that sends one
byte of its headers (or body) just within every read timeout holds a crawl, and a
worker slot, for as long as it likes. The crawler's sockets (client.py) therefore give
every operation at most the time left until the calling thread's deadline, and start
none once it has passed, so ``CRAWL_TOTAL_TIMEOUT`` holds however the server trickles.

The deadline is a context variable: each thread (each download of a concurrent batch)
has its own, and a kept-alive connection obeys whichever download is using it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("pixcrawler_http_deadline", default=None)


class DeadlinePassed(TimeoutError):
    """The download's total time limit has passed (a socket timeout is a TimeoutError too)."""


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


def clamp(timeout: float | None) -> float | None:
    """*timeout* for one socket operation, cut to the time left; none once it has passed."""
    remaining = left()
    if remaining is None:
        return timeout
    if remaining <= 0:
        raise DeadlinePassed("the download's total time limit has passed")
    return remaining if timeout is None else min(timeout, remaining)
