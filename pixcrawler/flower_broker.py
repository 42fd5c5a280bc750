"""Flower's broker view (queue lengths) for this app: every Sentinel, the right scheme.

Flower 2.2's Broker page and ``/api/queues/length`` build their Redis client from
``conn.as_uri()``. Two things go wrong with this app:

- The app names its own kombu transports (``broker_transport`` in celery_core/app.py),
  so ``as_uri()`` starts ``pixcrawler.celery_core.transport:Transport://`` instead of
  ``redis://`` (or ``...:SentinelTransport://``), and Flower's ``Broker`` factory,
  which dispatches on the scheme, answers "broker is not supported".
- For sentinel:// it names only the FIRST Sentinel of the ``;`` list, and Flower's
  ``RedisSentinel`` asks only that one (``Sentinel([(self.host, self.port)], ...)``):
  once that Sentinel's host is down, typically right after a failover, the view fails.
  (It also ignores the database in the URL, so it counted db 0's queues.)

Workers are not affected: kombu asks every Sentinel of the list itself.

How, and why this way: Flower picks its broker class in one place, the name ``Broker``
that ``flower.views.BaseHandler.get_broker`` calls (the Broker page and the queues API
both go through it). :func:`install` binds that name to :func:`broker`, which restores
the real scheme and, for sentinel://, returns :class:`SentinelBroker`: Flower's own
``RedisSentinel`` with one method overridden so redis-py's Sentinel gets the whole list
(with ``sentinel_kwargs``, which carry the Sentinels' ACL user and password and
timeouts). Everything else, queue names, priority buckets, key prefix, TLS, the
pipeline of LLENs, stays Flower's code. The list comes from the app's
``broker_transport_options`` (``pixcrawler_sentinels``, written by celery_core/app.py
from the same URL the workers use), which Flower already passes along.

The alternatives were worse: a wrapper command for Flower would change the command
line that every systemd unit and supervisor program carries; subclassing Flower's
request handlers would take over far more of Flower; Flower has no option for this.
:func:`install` checks its assumptions about Flower first and, if an upgrade broke them,
leaves Flower untouched with a warning (and tests/unit/test_flower_broker.py fails).

:func:`install` runs in Flower's process: celery_core/app.py calls it when Celery
imports the app's task modules (Flower does that when it starts), if Flower's views are
loaded, which they are in every ``celery`` command (Flower registers its command).
"""

from __future__ import annotations

import logging
from typing import Any

from flower import views as flower_views
from flower.utils import broker as flower_broker

log = logging.getLogger(__name__)

#: The transport option with every Sentinel's [host, port], in the URL's order.
SENTINELS_OPTION = "pixcrawler_sentinels"
#: ``as_uri()`` of a connection with these transports starts with the class path.
SCHEMES = {
    "pixcrawler.celery_core.transport:Transport": "redis",
    "pixcrawler.celery_core.transport:SentinelTransport": "sentinel",
}


def real_url(broker_url: str) -> str:
    """*broker_url* with this app's transport class path turned back into its scheme."""
    for class_path, scheme in SCHEMES.items():
        if broker_url.startswith(f"{class_path}://"):
            return scheme + broker_url[len(class_path) :]
    return broker_url


class SentinelBroker(flower_broker.RedisSentinel):  # type: ignore[misc]
    """Flower's Sentinel broker view, asking every Sentinel of the broker URL."""

    def _get_redis_client(self, broker_options: dict[str, Any], broker_use_ssl: Any) -> Any:
        sentinels = [(str(h), int(p)) for h, p in broker_options.get(SENTINELS_OPTION) or []]
        if not sentinels:  # not this app's options: Flower's own behaviour
            return super()._get_redis_client(broker_options, broker_use_ssl)
        # As Flower's own method, but with every Sentinel and the URL's database.
        sentinel_kwargs = dict(broker_options.get("sentinel_kwargs") or {})
        sentinel_kwargs.setdefault("socket_connect_timeout", self.socket_connect_timeout)
        sentinel_kwargs.setdefault("socket_timeout", self.socket_timeout)
        sentinel_kwargs.setdefault("retry", flower_broker.Retry(flower_broker.NoBackoff(), 0))
        connection_kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "db": self.vhost,
            "sentinel_kwargs": sentinel_kwargs,
            "socket_connect_timeout": self.socket_connect_timeout,
            "socket_timeout": self.socket_timeout,
            "retry": flower_broker.Retry(flower_broker.NoBackoff(), 0),
        }
        if isinstance(broker_use_ssl, dict):
            connection_kwargs["ssl"] = True
            connection_kwargs.update(broker_use_ssl)
        sentinel = flower_broker.redis.sentinel.Sentinel(sentinels, **connection_kwargs)
        # Flower's queues() closes this client when it is done with it.
        return sentinel.master_for(self.master_name)


def broker(broker_url: str, *args: Any, **kwargs: Any) -> Any:
    """Flower's ``Broker(url, http_api=..., broker_options=..., broker_use_ssl=...)``."""
    url = real_url(broker_url)
    if url.startswith("sentinel://"):
        return SentinelBroker(url, *args, **kwargs)
    return flower_broker.Broker(url, *args, **kwargs)


def compatible(views: Any) -> bool:
    """Whether this Flower builds its broker view the way :func:`install` assumes."""
    handler = getattr(views, "BaseHandler", None)
    return (
        getattr(views, "Broker", None) in (flower_broker.Broker, broker)
        and callable(getattr(handler, "get_broker", None))
        and callable(getattr(flower_broker.RedisSentinel, "_get_redis_client", None))
        and flower_broker.redis is not None
    )


def install() -> bool:
    """Make Flower's handlers build their broker view with :func:`broker`; True if so."""
    if not compatible(flower_views):
        log.warning(
            "Flower changed how it builds its broker view; the Broker page keeps Flower's "
            "own behaviour (pixcrawler.flower_broker)"
        )
        return False
    flower_views.Broker = broker
    return True
