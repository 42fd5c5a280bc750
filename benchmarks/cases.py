"""The configurations compared: the seed's, and the per-queue settings we recommend.

Everything the Ansible role needs as per-queue defaults is in :data:`RECOMMENDED`; the
benchmark rows use the same objects, so the report cannot drift from what was measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from benchmarks.env import Profile, seed_profile
from benchmarks.throughput import OUR_CLIENT, SEED_CLIENT, ClientStyle

WARNING = ("--loglevel=WARNING",)


@dataclass(frozen=True)
class QueueSettings:
    """One queue's worker settings as the deployment should carry them."""

    queue: str
    pool: str
    concurrency: str
    prefetch_multiplier: int
    max_tasks_per_child: str
    instances: str
    events: bool
    track_started: bool
    loglevel: str
    why: str


#: One consuming process per core for the queues whose pool cannot use more than one.
CORES = os.cpu_count() or 2


def _short(
    label: str, *, events: bool, patched: bool = False, pool: str = "solo", requeue: bool = True
) -> Profile:
    concurrency, instances = (1, CORES) if pool == "solo" else (4, 1)
    return Profile(
        label,
        pool,
        concurrency,
        {
            "WORKER_PREFETCH_MULTIPLIER": "4",
            "TASK_ACKS_LATE": "true",
            "TASK_TRACK_STARTED": "false",
            "ENABLE_MONITORING": "true" if events else "false",
            # Patched rows record each delivery's owner (transport.py) unless told not to.
            **({} if requeue else {"REQUEUE_ON_RESTART": "false"}),
        },
        WARNING,
        instances,
        patched,
    )


#: (a) rows: (profile, client). The first is the baseline the ratios are taken against;
#: the second is the recommended production setting for the short-task queue.
THROUGHPUT_CASES: list[tuple[Profile, ClientStyle]] = [
    (seed_profile("seed"), SEED_CLIENT),
    (_short("ours", events=False), OUR_CLIENT),
    (_short("ours, events on", events=True), OUR_CLIENT),
    (_short("ours, threads pool", events=False, pool="threads"), OUR_CLIENT),
    (_short("ours + client reuse, events on", events=True, patched=True), OUR_CLIENT),
    (_short("ours + client reuse", events=False, patched=True), OUR_CLIENT),
    # The cost of requeue on restart: one HSET per delivery, one HDEL per ack, inside
    # kombu's own MULTI/EXEC (the row above has it on).
    (
        _short(
            "ours + client reuse, no requeue on restart",
            events=False,
            patched=True,
            requeue=False,
        ),
        OUR_CLIENT,
    ),
]

CRAWL_CASES: list[Profile] = [
    seed_profile("seed"),
    Profile(
        "ours",
        "threads",
        64,
        {
            "WORKER_PREFETCH_MULTIPLIER": "2",
            "TASK_ACKS_LATE": "true",
            "TASK_TRACK_STARTED": "false",
            "ENABLE_MONITORING": "true",
        },
        WARNING,
        CORES,
    ),
]


def _validation(label: str, pool: str) -> Profile:
    settings = {
        "WORKER_PREFETCH_MULTIPLIER": "4",
        "TASK_ACKS_LATE": "true",
        "TASK_TRACK_STARTED": "false",
        "ENABLE_MONITORING": "true",
        "WORKER_MAX_TASKS_PER_CHILD": "1000",
    }
    return Profile(label, pool, 1, settings, WARNING, CORES)


#: One single-process worker per core; "ours" keeps prefork for isolation and limits.
VALIDATION_CASES: list[Profile] = [
    seed_profile("seed"),
    _validation("ours", "prefork"),
    _validation("ours, solo pool", "solo"),
]

MAINTENANCE_CASE = Profile(
    "ours",
    "prefork",
    1,
    {
        "WORKER_PREFETCH_MULTIPLIER": "1",
        "TASK_ACKS_LATE": "true",
        "TASK_TRACK_STARTED": "false",
        "ENABLE_MONITORING": "true",
        "WORKER_MAX_TASKS_PER_CHILD": "100",
    },
)


#: The per-queue defaults for the deployment, each backed by a row above.
RECOMMENDED: list[QueueSettings] = [
    QueueSettings(
        queue="crawl",
        pool="threads",
        concurrency="64",
        prefetch_multiplier=2,
        max_tasks_per_child="n/a (threads pool ignores it)",
        instances="one per core",
        events=True,
        track_started=False,
        loglevel="WARNING",
        why="(c)",
    ),
    QueueSettings(
        queue="validation",
        pool="prefork",
        concurrency="1",
        prefetch_multiplier=4,
        max_tasks_per_child="1000",
        instances="one per core",
        events=True,
        track_started=False,
        loglevel="WARNING",
        why="(d)",
    ),
    QueueSettings(
        queue="default",
        pool="solo",
        concurrency="1",
        prefetch_multiplier=4,
        max_tasks_per_child="n/a (solo pool ignores it)",
        instances="one per core",
        events=False,
        track_started=False,
        loglevel="WARNING",
        why="(a)",
    ),
    QueueSettings(
        queue="maintenance",
        pool="prefork",
        concurrency="1",
        prefetch_multiplier=1,
        max_tasks_per_child="100",
        instances="1",
        events=True,
        track_started=False,
        loglevel="INFO",
        why="footprint",
    ),
]
