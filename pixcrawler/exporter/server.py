"""``pixcrawler exporter``: the collector and the event follower behind ``/metrics``.

The HTTP server is prometheus-client's own (a thread per request, read-only, no other
path worth serving). The client app is :func:`pixcrawler.celery_core.client.client_app`:
the workers' connection settings (TLS, Sentinel, ACL user) with short, bounded I/O, so a
Redis that does not answer costs a scrape ``EXPORTER_TIMEOUT`` seconds, not minutes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from pixcrawler.celery_core.client import client_app
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.exporter.collector import PixCrawlerCollector, ScrapeErrors
from pixcrawler.exporter.events import EventFollower, EventState

logger = logging.getLogger(__name__)


@dataclass
class Exporter:
    registry: CollectorRegistry
    follower: EventFollower
    server: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.follower.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.follower.join(timeout=5)


def build(settings: CelerySettings) -> tuple[CollectorRegistry, EventFollower]:
    """The registry with every metric, and the (not yet started) event follower."""
    registry = CollectorRegistry(auto_describe=False)
    app = client_app(settings, settings.exporter_timeout)
    errors = ScrapeErrors(settings)
    events = EventState(registry)

    def subscribe() -> tuple[Any, str, Callable[[], None]]:
        conn = app.connection_for_read()
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
            channel: Any = conn.default_channel  # kombu's Redis channel
            pubsub = channel.client.pubsub(ignore_subscribe_messages=False)
        except BaseException:
            conn.release()
            raise
        return pubsub, str(channel.keyprefix_fanout), conn.release

    follower = EventFollower(events, subscribe, lambda exc: errors.failed("events", exc))
    registry.register(PixCrawlerCollector(app, settings, events, errors))
    return registry, follower


def start(settings: CelerySettings, port: int | None = None) -> Exporter:
    """Follow the events and serve ``/metrics`` (*port* 0: any free one, for tests)."""
    # Counters without their ``_created`` twins: Prometheus does not need them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry, follower = build(settings)
    follower.start()
    server, thread = start_http_server(
        settings.exporter_port if port is None else port,
        addr=settings.exporter_address,
        registry=registry,
    )
    logger.warning(
        "pixcrawler exporter serving /metrics on %s:%s",
        settings.exporter_address,
        server.server_port,
    )
    return Exporter(registry, follower, server, thread)


def serve(settings: CelerySettings) -> int:
    """Run until interrupted (the CLI's ``pixcrawler exporter``)."""
    exporter = start(settings)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()
    return 0
