"""``Retry-After`` (RFC 9110 10.2.3): how long a 429 or 503 asks the client to wait.

A server that says when to come back is telling us when a retry can succeed; retrying
sooner only spends one of the task's few retries on another refusal. The wait is capped
(``CRAWL_RETRY_AFTER_MAX``): a server must not park a task for days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, cap: float, now: datetime | None = None) -> float | None:
    """Seconds to wait per *value* (delay-seconds or an HTTP date), at most *cap*.

    None when there is no usable value (absent, malformed, or a date in the past), so
    the ordinary backoff applies.
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 850 and asctime forms are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds <= 0:
        return None
    return min(seconds, cap)
