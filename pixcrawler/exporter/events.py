"""The workers' Celery events: who is alive and consuming what, and how tasks end.

**Consumers.** Every worker sends a ``worker-heartbeat`` every 2 s (``freq``) and a
``worker-offline`` when it stops; a node is alive while its last heartbeat is younger
than twice its ``freq`` (Celery's own expiry window, ``celery.events.state``). Which queue
a node consumes is in its name: the units start ``-Q <queue> -n <queue>@<host>`` and the
preflight keeps node names unique, so ``crawl@worker1`` consumes ``crawl``. This was
chosen over ``celery inspect active_queues``: a broadcast needs write access to the
broker (PUBLISH, reply queues) where this needs none, costs nothing per scrape, and
notices a dead worker within seconds instead of after a cache period. A node named
otherwise is counted in ``pixcrawler_workers_alive`` but consumes no known queue.

**Outcomes.** ``task-succeeded`` carries the runtime, ``task-failed`` the exception (its
repr: ``TaskError('invalid_payload', ...)``, whose first argument is the code) and
``task-retried`` the exception that caused the retry; none carries the task's name,
which comes from the ``task-sent`` (with the queue it was sent to) or ``task-received``
event of the same id, remembered in a bounded map. The deployed workers send task
events (``ENABLE_MONITORING``, default true, sets ``worker_send_task_events`` and
``task_send_sent_event``; the env files do not turn it off).

The events are read straight off Redis's pub/sub (kombu publishes Celery's fanout
exchange ``celeryev`` on ``/<db>.celeryev/<routing key>``): a PSUBSCRIBE needs no key
and no write, where kombu's own receiver would declare a queue and bind it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pixcrawler.celery_core.queues import QUEUE_NAMES, queue_for_task

logger = logging.getLogger(__name__)

#: The PSUBSCRIBE pattern: Celery's event channels of every database (kombu prefixes
#: ``/<db>.``); messages of other databases are dropped by :meth:`EventFollower.run`.
EVENT_PATTERN = "/*.celeryev/*"
#: Task ids whose name is remembered until their outcome arrives.
NAME_MEMORY = 100_000
#: Distinct task names given their own label; the rest share ``other``.
MAX_TASK_NAMES = 200
UNKNOWN = "unknown"
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
#: ``TaskError('code', ...)`` and subclasses: the code, never the message.
_ERROR_CODE = re.compile(r"^\w{1,64}\(\s*'([a-z][a-z0-9_]{0,63})'")
RUNTIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def decode(payload: bytes | str) -> list[dict[str, Any]]:
    """The events in one kombu message as published on Redis pub/sub.

    The envelope is JSON with a base64 ``body`` (``properties.body_encoding``); a worker
    sends its task events in batches, whose body is a list.
    """
    message = json.loads(payload)
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    content = json.loads(body)
    events = content if isinstance(content, list) else [content]
    return [event for event in events if isinstance(event, dict)]


def error_code(exception: Any) -> str:
    """The TaskError code in an event's exception text, else ``unknown``."""
    match = _ERROR_CODE.match(str(exception or ""))
    return match.group(1) if match else UNKNOWN


class EventState:
    """What the events said so far: live nodes, task names, outcome counters."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        #: node -> (when its last worker event arrived, its heartbeat interval)
        self._nodes: dict[str, tuple[float, float]] = {}
        self._tasks: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._names: set[str] = set()
        self.outcomes = Counter(
            "pixcrawler_task_outcomes",
            "Tasks finished or retried, by queue, task, outcome (succeeded, failed, retried)"
            " and TaskError code (failed and retried; empty for succeeded)",
            ["queue", "task", "outcome", "code"],
            registry=registry,
        )
        self.runtime = Histogram(
            "pixcrawler_task_runtime_seconds",
            "Runtime of succeeded tasks as the worker measured it",
            ["queue", "task"],
            buckets=RUNTIME_BUCKETS,
            registry=registry,
        )

    # --- the events -----------------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        if kind.startswith("worker-"):
            self._worker(kind, event)
        elif kind in ("task-sent", "task-received"):
            self._remember(event)
        elif kind == "task-succeeded":
            queue, task = self._forget(event)
            self.outcomes.labels(queue, task, "succeeded", "").inc()
            runtime = event.get("runtime")
            if isinstance(runtime, int | float) and not isinstance(runtime, bool):
                self.runtime.labels(queue, task).observe(max(0.0, float(runtime)))
        elif kind == "task-failed":
            queue, task = self._forget(event)
            self.outcomes.labels(queue, task, "failed", error_code(event.get("exception"))).inc()
        elif kind == "task-retried":
            queue, task = self._lookup(event)
            self.outcomes.labels(queue, task, "retried", error_code(event.get("exception"))).inc()

    def _worker(self, kind: str, event: dict[str, Any]) -> None:
        node = str(event.get("hostname", ""))
        if not node:
            return
        with self._lock:
            if kind == "worker-offline":
                self._nodes.pop(node, None)
                return
            freq = event.get("freq")
            interval = float(freq) if isinstance(freq, int | float) and freq > 0 else 2.0
            self._nodes[node] = (self._clock(), interval)

    def _label(self, name: str) -> str:
        if not _TASK_NAME.match(name):
            return "other"
        if name not in self._names and len(self._names) >= MAX_TASK_NAMES:
            return "other"
        self._names.add(name)
        return name

    def _remember(self, event: dict[str, Any]) -> None:
        task_id, name = str(event.get("uuid", "")), event.get("name")
        if not task_id or not isinstance(name, str):
            return
        queue = event.get("queue")
        if queue not in QUEUE_NAMES:
            known = self._tasks.get(task_id)
            queue = known[0] if known else queue_for_task(name).name
        with self._lock:
            self._tasks[task_id] = (str(queue), self._label(name))
            self._tasks.move_to_end(task_id)
            while len(self._tasks) > NAME_MEMORY:
                self._tasks.popitem(last=False)

    def _lookup(self, event: dict[str, Any]) -> tuple[str, str]:
        with self._lock:
            return self._tasks.get(str(event.get("uuid", "")), (UNKNOWN, UNKNOWN))

    def _forget(self, event: dict[str, Any]) -> tuple[str, str]:
        with self._lock:
            return self._tasks.pop(str(event.get("uuid", "")), (UNKNOWN, UNKNOWN))

    # --- what a scrape reads ----------------------------------------------------------
    def alive_nodes(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return sorted(n for n, (seen, freq) in self._nodes.items() if now - seen < 2 * freq)

    def consumers(self) -> dict[str, int]:
        """Live nodes per queue, from their names (``<queue>@<host>``)."""
        counts = dict.fromkeys(QUEUE_NAMES, 0)
        for node in self.alive_nodes():
            queue = node.split("@", 1)[0]
            if queue in counts:
                counts[queue] += 1
        return counts


class EventFollower(threading.Thread):
    """Reads the event channels into an :class:`EventState`, reconnecting for ever.

    *subscribe* opens a pub/sub connection and returns it with the channel prefix of the
    broker's database (``/0.``) and what closes the connection behind it; each failure
    is counted by *on_error* and retried after *backoff* seconds, so a Redis outage
    shows as errors, never as a dead exporter.
    """

    def __init__(
        self,
        state: EventState,
        subscribe: Callable[[], tuple[Any, str, Callable[[], None]]],
        on_error: Callable[[BaseException], None],
        backoff: float = 1.0,
    ) -> None:
        super().__init__(name="pixcrawler-exporter-events", daemon=True)
        self.state = state
        self._subscribe = subscribe
        self._on_error = on_error
        self._backoff = backoff
        self.stopping = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                for event in self._events():
                    self.state.handle(event)
            except Exception as exc:  # any failure: count it, wait, reconnect
                self.connected.clear()
                self._on_error(exc)
                self.stopping.wait(self._backoff)

    def _events(self) -> Iterator[dict[str, Any]]:
        pubsub, prefix, close = self._subscribe()
        try:
            pubsub.psubscribe(EVENT_PATTERN)
            wanted = f"{prefix}celeryev/"
            while not self.stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message.get("type") == "psubscribe":
                    self.connected.set()
                    continue
                channel = message.get("channel")
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                if message.get("type") != "pmessage" or not channel.startswith(wanted):
                    continue
                try:
                    events = decode(message["data"])
                except (ValueError, KeyError, TypeError):
                    continue  # not an event of ours: nothing to count
                yield from events
        finally:
            pubsub.close()
            close()
