"""Benchmark-only: the kombu client reuse proposed for the package.

kombu's Redis channel builds a new ``redis.Redis`` object for every publish, ack and
event (``conn_or_acquire``), and redis-py's constructor copies about 200 response
callbacks into a case-insensitive dict each time: about 100 us of CPU per call, three
to six calls per task. Reusing one client per connection pool removes that; commands
still take connections from the same pool, so behaviour is unchanged.

A worker gets it with ``-I benchmarks.patched_worker``; the benchmark's own client uses
:func:`applied`, so the seed rows in the same process stay unpatched. The
package diff that would make it permanent is in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis as kombu_redis

_CHANNEL: Any = kombu_redis.Channel
_ORIGINAL = _CHANNEL._create_client


def _create_client(self: Any, asynchronous: bool = False) -> Any:
    if asynchronous:
        return _ORIGINAL(self, asynchronous=True)
    pool = self.pool
    client = self.__dict__.get("_pixcrawler_client")
    if client is None or client.connection_pool is not pool:
        client = self.Client(connection_pool=pool)
        self.__dict__["_pixcrawler_client"] = client
    return client


def apply() -> None:
    _CHANNEL._create_client = _create_client


def restore() -> None:
    _CHANNEL._create_client = _ORIGINAL


@contextlib.contextmanager
def applied(enabled: bool = True) -> Iterator[None]:
    if enabled:
        apply()
    try:
        yield
    finally:
        restore()


class Channel(kombu_redis.Channel):
    """The same change as a transport subclass: the form proposed for the package."""

    def _create_client(self, asynchronous: bool = False) -> Any:
        return _create_client(self, asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
