"""Core tasks: the health check and the two cleanups the beat schedule runs.

Results in Redis normally carry a TTL (``RESULT_EXPIRES``); the result cleanup exists for
the keys that do not (written with another expiry setting, by an older deployment, or
left by a crashed chord), which Celery's own ``backend_cleanup`` ignores on Redis.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from pixcrawler import __version__
from pixcrawler.celery_core.app import get_celery_app, result_client
from pixcrawler.celery_core.base import BaseTask
from pixcrawler.storage import get_store
from pixcrawler.storage.sweep import sweep

app = get_celery_app()

RESULT_KEY_PATTERN = "celery-task-meta-*"


@app.task(bind=True, base=BaseTask, name="celery_core.health_check")
def health_check(self: BaseTask) -> dict[str, Any]:
    """Who answered, from which queue; never any configuration value."""
    info = self.request.delivery_info or {}
    return {
        "hostname": self.request.hostname or socket.gethostname(),
        "queue": info.get("routing_key"),
        "pid": os.getpid(),
        "versions": {
            "pixcrawler": __version__,
            "celery": version("celery"),
            "kombu": version("kombu"),
            "python": platform.python_version(),
        },
        "timestamp": datetime.now(UTC).isoformat(),
    }


def _date_done(raw: bytes | str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("date_done")
        if not value:
            return None
        parsed = datetime.fromisoformat(value)
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.task(bind=True, base=BaseTask, name="celery_core.cleanup_expired_results")
def cleanup_expired_results(self: BaseTask, batch: int = 500) -> dict[str, int]:
    """Delete result keys older than RESULT_EXPIRES that have no TTL; give the rest one."""
    expires = self.settings.result_expires
    client = result_client(self.app)
    now = datetime.now(UTC)
    scanned = deleted = expiry_set = 0
    for key in client.scan_iter(match=RESULT_KEY_PATTERN, count=batch):
        scanned += 1
        if client.ttl(key) != -1:  # -1: no expiry; -2: already gone
            continue
        done = _date_done(client.get(key))
        age = (now - done).total_seconds() if done else None
        if age is None or age >= expires:
            # No date means an unfinished or foreign record; past retention either way.
            deleted += client.delete(key)
        else:
            expiry_set += int(bool(client.expire(key, int(expires - age) + 1)))
    return {"scanned": scanned, "deleted": deleted, "expiry_set": expiry_set}


@app.task(bind=True, base=BaseTask, name="celery_core.cleanup_storage")
def cleanup_storage(self: BaseTask) -> dict[str, int]:
    """Delete images older than STORAGE_RETENTION_DAYS and stale partial writes.

    The same on every store (storage/sweep.py): files by modification time, S3 objects
    by LastModified (deleted in batches), and a killed download's temporary file after
    an hour.
    """
    settings = self.settings
    counts = sweep(get_store(settings), time.time(), settings.storage_retention_seconds)
    return asdict(counts)
