"""The publish time of every task message, stamped in a header when it is sent.

Celery records when a task was received, started and finished, never when it was
published, so nothing in a waiting message says how long it has waited. The exporter's
``pixcrawler_queue_oldest_message_age_seconds`` needs exactly that: a queue whose oldest
message gets older is a queue nobody consumes, whatever its length says. The stamp is a
header because headers travel with the message unchanged through kombu's priority lists,
the unacked hash and a restore, and every publisher of this app (callers, chains, retries,
beat) goes through ``before_task_publish``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import signals

#: Seconds since the epoch at publish, as a float (a header of the task message).
PUBLISHED_AT_HEADER = "pixcrawler_published_at"


@signals.before_task_publish.connect
def stamp_publish_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Add the publish time; an existing stamp (a message being re-sent as is) stays."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


def published_at(raw: bytes | str) -> float | None:
    """The stamp of a raw kombu message as Redis holds it; None if absent or unreadable.

    kombu stores ``{"body": ..., "headers": {...}, "properties": {...}}`` as JSON. A
    message published before the stamp existed, or by another app, has none.
    """
    try:
        message = json.loads(raw)
        value = message["headers"][PUBLISHED_AT_HEADER]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
