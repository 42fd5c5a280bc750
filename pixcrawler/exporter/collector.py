"""One scrape: every part read on its own, a failing part counted, never fatal.

Parts: ``queues`` (backlog and oldest age), ``unacked``, ``redis`` (INFO), ``sentinel``
(with a sentinel:// broker), ``storage``, and ``events`` (counted by the event follower
whenever its subscription fails). A part that fails adds one to
``pixcrawler_exporter_scrape_errors_total{part=...}`` and leaves its metrics out of that
scrape, so a stale value is never shown as current; the rest of the scrape goes on. The
reason is logged once when a part starts failing (scrubbed of every secret of the
settings) and once when it recovers, not on every scrape.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from celery import Celery
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.scrub import scrub, secrets_of
from pixcrawler.errortext import describe_error
from pixcrawler.exporter.broker import redis_state, sentinel_answers
from pixcrawler.exporter.events import EventState
from pixcrawler.exporter.queues import queue_states, unacked_by_queue
from pixcrawler.exporter.store import build_store, store_answers
from pixcrawler.storage import ImageStore

logger = logging.getLogger(__name__)

PARTS = ("queues", "unacked", "redis", "sentinel", "storage", "events")
T = TypeVar("T")


class ScrapeErrors:
    """``pixcrawler_exporter_scrape_errors_total`` and the log lines that go with it."""

    def __init__(self, settings: CelerySettings) -> None:
        self._secrets = secrets_of(settings)
        self._timeout = settings.exporter_timeout
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self.counter = Counter(
            "pixcrawler_exporter_scrape_errors",
            "Parts of a scrape (or of the event subscription) that failed",
            ["part"],
            # Not registered: the collector yields it last, after this scrape's failures.
            registry=None,
        )
        for part in PARTS:
            self.counter.labels(part)

    def failed(self, part: str, exc: BaseException) -> None:
        self.counter.labels(part).inc()
        with self._lock:
            first = part not in self._failing
            self._failing.add(part)
        if first:
            reason = scrub(describe_error(exc, self._timeout), self._secrets)
            logger.warning("exporter part %s failing: %s", part, reason)

    def succeeded(self, part: str) -> None:
        with self._lock:
            was = part in self._failing
            self._failing.discard(part)
        if was:
            logger.warning("exporter part %s recovered", part)

    def run(self, part: str, read: Callable[[], T]) -> T | None:
        try:
            value = read()
        except Exception as exc:
            self.failed(part, exc)
            return None
        self.succeeded(part)
        return value


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class PixCrawlerCollector(Collector):
    """Reads Redis, the Sentinels and the store at scrape time; adds the events' view."""

    def __init__(
        self,
        app: Celery,
        settings: CelerySettings,
        events: EventState,
        errors: ScrapeErrors,
    ) -> None:
        self.app = app
        self.settings = settings
        self.events = events
        self.errors = errors
        self._store: ImageStore | None = None

    @contextlib.contextmanager
    def _broker(self) -> Iterator[Any]:
        """A redis-py client of the broker (the master, with Sentinel), for one scrape."""
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
            channel: Any = conn.default_channel  # kombu's Redis channel: .client
            yield channel.client

    def collect(self) -> Iterator[Metric]:
        yield from self._redis_parts()
        yield from self._consumers()
        if self.settings.broker_scheme == "sentinel":
            yield from self._sentinels()
        yield from self._storage()
        yield from self.errors.counter.collect()

    def _redis_parts(self) -> Iterator[Metric]:
        try:
            with self._broker() as client:
                queues = self.errors.run("queues", lambda: queue_states(client))
                unacked = self.errors.run("unacked", lambda: unacked_by_queue(client))
                state = self.errors.run("redis", lambda: redis_state(client))
        except Exception as exc:  # no connection: every part that needed it failed
            for part in ("queues", "unacked", "redis"):
                self.errors.failed(part, exc)
            return
        if queues is not None:
            backlog = _gauge(
                "pixcrawler_queue_backlog",
                "Messages waiting in the queue, summed over every priority list",
                ["queue"],
            )
            age = _gauge(
                "pixcrawler_queue_oldest_message_age_seconds",
                "Seconds the oldest waiting message has waited since it was published"
                " (0 when the queue is empty)",
                ["queue"],
            )
            for name, queue in queues.items():
                backlog.add_metric([name], queue.backlog)
                age.add_metric([name], queue.oldest_age)
            yield backlog
            yield age
        if unacked is not None:
            family = _gauge(
                "pixcrawler_queue_unacked",
                "Deliveries taken by a worker and not yet acknowledged",
                ["queue"],
            )
            for name, count in unacked.by_queue.items():
                family.add_metric([name], count)
            yield family
        if state is not None:
            yield from _redis_families(state)

    def _consumers(self) -> Iterator[Metric]:
        family = _gauge(
            "pixcrawler_queue_consumers",
            "Worker nodes consuming the queue, alive by their heartbeats",
            ["queue"],
        )
        for name, count in self.events.consumers().items():
            family.add_metric([name], count)
        yield family
        yield GaugeMetricFamily(
            "pixcrawler_workers_alive",
            "Worker nodes whose heartbeats arrive, whatever their name",
            value=len(self.events.alive_nodes()),
        )

    def _sentinels(self) -> Iterator[Metric]:
        answers = self.errors.run(
            "sentinel", lambda: sentinel_answers(self.settings, self.settings.exporter_timeout)
        )
        if answers is None:
            return
        up = _gauge("pixcrawler_sentinel_up", "The Sentinel answered", ["sentinel"])
        known = _gauge(
            "pixcrawler_sentinel_master_known",
            "The Sentinel names a master for the broker's master name",
            ["sentinel"],
        )
        quorum = _gauge(
            "pixcrawler_sentinel_ckquorum_ok",
            "SENTINEL CKQUORUM says a failover could be authorised",
            ["sentinel"],
        )
        for answer in answers:
            label = [str(answer.address)]
            up.add_metric(label, int(answer.error is None))
            known.add_metric(label, int(answer.master is not None))
            quorum.add_metric(label, int(answer.ckquorum_ok))
        yield from (up, known, quorum)

    def _storage(self) -> Iterator[Metric]:
        def probe() -> int:
            if self._store is None:
                self._store = build_store(self.settings, self.settings.exporter_timeout)
            store_answers(self._store)
            return 1

        reachable = self.errors.run("storage", probe)
        yield GaugeMetricFamily(
            "pixcrawler_object_store_up",
            "The image store answered a probe with the workers' identity (a failed probe"
            " also counts as a scrape error of part storage)",
            value=reachable or 0,
        )


def _redis_families(state: Any) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "pixcrawler_redis_used_memory_bytes", "Redis used_memory", value=state.used_memory
    )
    yield GaugeMetricFamily(
        "pixcrawler_redis_maxmemory_bytes",
        "Redis maxmemory (0: no limit); with noeviction, new tasks are refused at it",
        value=state.maxmemory,
    )
    yield GaugeMetricFamily(
        "pixcrawler_redis_aof_enabled", "The append-only file is on", value=int(state.aof_enabled)
    )
    yield GaugeMetricFamily(
        "pixcrawler_redis_aof_last_write_ok",
        "The last write of the append-only file succeeded",
        value=int(state.aof_last_write_ok),
    )
    role = _gauge("pixcrawler_redis_role", "Replication role of the broker's Redis", ["role"])
    role.add_metric([state.role], 1)
    yield role
    yield GaugeMetricFamily(
        "pixcrawler_redis_connected_replicas",
        "Replicas connected to the broker's Redis",
        value=state.connected_replicas,
    )
