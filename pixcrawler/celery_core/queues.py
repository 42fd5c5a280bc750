"""The one table of queues: names, routing globs and their order of service.

Everything else (Celery routes, the worker's consumption order, the verification script,
the Ansible inventory checks via ``pixcrawler config queues``) derives from ``QUEUES``.

Priority on Redis is the reverse of the seed's RabbitMQ-style numbers: kombu serves
priority 0 first and 9 last, and kombu's ``Queue`` has no ``priority`` argument at all.
The seed's intent (crawl highest, maintenance lowest) is therefore expressed twice, both
in Redis terms: each queue's messages carry a Redis priority bucket, and the worker polls
queues in this table's order (kombu's ``priority`` queue-order strategy). BRPOP lists
keys bucket-major, so crawl work is taken before maintenance work whatever the
``-Q`` order on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

#: kombu's priority buckets on Redis; each queue occupies one of them.
PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    #: Redis priority bucket (0 is served first).
    redis_priority: int
    #: Task-name globs routed here.
    patterns: tuple[str, ...]
    description: str


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("crawl", 0, ("builder.tasks.*",), "image downloads (I/O-bound)"),
    QueueSpec("validation", 3, ("validator.tasks.*",), "image verification (CPU-bound)"),
    QueueSpec("default", 3, (), "everything not routed elsewhere"),
    QueueSpec("maintenance", 9, ("celery_core.cleanup_*",), "cleanup of results and files"),
)

DEFAULT_QUEUE = "default"
QUEUE_NAMES: tuple[str, ...] = tuple(q.name for q in QUEUES)
_BY_NAME = {q.name: q for q in QUEUES}


def queue_spec(name: str) -> QueueSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown queue {name!r}; known queues: {', '.join(QUEUE_NAMES)}") from None


def queue_for_task(task_name: str) -> QueueSpec:
    """The queue a task name routes to; the first matching glob wins."""
    for spec in QUEUES:
        if any(fnmatchcase(task_name, pattern) for pattern in spec.patterns):
            return spec
    return _BY_NAME[DEFAULT_QUEUE]
