"""kombu's Redis transport, reusing one ``redis.Redis`` per connection pool.

kombu's channel calls ``_create_client()`` for every publish, ack and event, and
redis-py's constructor copies about 200 response callbacks each time (about 100 us of
CPU per command). Reusing one client per pool sends the same commands through the same
pool; measured in docs/BENCHMARKS.md (rows "ours + client reuse"). The client is rebuilt
whenever kombu replaces the pool (a reconnect), so it never outlives its connections.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

_BaseChannel: Any = kombu_redis.Channel  # kombu's stubs do not declare _create_client


class Channel(_BaseChannel):  # type: ignore[misc]
    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the BRPOP/pub-sub client is already cached by kombu
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_pixcrawler_client")
        if client is None or client.connection_pool is not pool:
            client = super()._create_client()
            self.__dict__["_pixcrawler_client"] = client
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
