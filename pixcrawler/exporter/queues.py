"""What waits in Redis, per queue: backlog, age of the oldest message, unacknowledged.

kombu keeps a queue's messages of priority *p* in the list ``queue\\x06\\x16p`` (``queue``
itself for 0), so the backlog is the sum over every bucket of
:data:`~pixcrawler.celery_core.queues.PRIORITY_STEPS`: a task sent with a priority of
its own lands outside the queue's usual list, and one-list exporters never see it.
kombu LPUSHes and BRPOPs, so each list's oldest message is its right end (``LINDEX -1``,
one O(1) read per list); its age comes from the publish stamp (celery_core/stamps.py).

Unacknowledged deliveries are kombu's ``unacked`` hash (tag -> ``[message, exchange,
routing key]``); the routing key names the queue (one direct exchange per queue, routed
by name). It is read with HSCAN, a page at a time: it holds at most what the workers
prefetched, but must not block Redis if it ever holds more.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pixcrawler.celery_core.queues import PRIORITY_STEPS, QUEUE_NAMES
from pixcrawler.celery_core.stamps import published_at

#: kombu's separator between a queue's name and its priority bucket.
PRIORITY_SEPARATOR = "\x06\x16"
#: kombu's hash of unacknowledged deliveries (transport option ``unacked_key``).
UNACKED_KEY = "unacked"


def priority_lists(queue: str) -> list[str]:
    """Every Redis list that holds *queue*'s messages, one per priority bucket."""
    return [queue if p == 0 else f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS]


@dataclass
class QueueState:
    backlog: int = 0
    #: Seconds the oldest stamped message has waited; 0 when none is stamped or waiting.
    oldest_age: float = 0.0


def queue_states(client: Any, now: float | None = None) -> dict[str, QueueState]:
    """Backlog and oldest age of every queue of the table, in one pipeline."""
    now = time.time() if now is None else now
    keys = [(queue, key) for queue in QUEUE_NAMES for key in priority_lists(queue)]
    pipe = client.pipeline(transaction=False)
    for _queue, key in keys:
        pipe.llen(key)
        pipe.lindex(key, -1)
    replies = pipe.execute()
    states = {queue: QueueState() for queue in QUEUE_NAMES}
    for index, (queue, _key) in enumerate(keys):
        length, oldest = replies[2 * index], replies[2 * index + 1]
        state = states[queue]
        state.backlog += int(length or 0)
        stamp = published_at(oldest) if oldest is not None else None
        if stamp is not None:
            state.oldest_age = max(state.oldest_age, now - stamp)
    return states


@dataclass
class Unacked:
    by_queue: dict[str, int] = field(default_factory=dict)
    #: Deliveries whose routing key is no queue of the table (another app's, or unreadable).
    other: int = 0


def unacked_by_queue(client: Any, key: str = UNACKED_KEY, page: int = 500) -> Unacked:
    """Unacknowledged deliveries per queue, from each delivery's routing key."""
    found = Unacked(dict.fromkeys(QUEUE_NAMES, 0))
    for _tag, raw in client.hscan_iter(key, count=page):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, TypeError, IndexError):
            routing_key = None
        if routing_key in found.by_queue:
            found.by_queue[routing_key] += 1
        else:
            found.other += 1
    return found
