"""Test-only tasks, loaded into test workers with ``-I tests.support.tasks``.

Their names follow the routing globs, so each lands on the queue a real task of that
family would: ``builder.tasks.*`` on crawl, ``validator.tasks.*`` on validation,
``celery_core.cleanup_*`` on maintenance, anything else on default. They leave their
traces in a Redis list of the result backend, which the test reads back directly.
"""

from __future__ import annotations

import os
import time

from pixcrawler.celery_core.app import get_celery_app, result_client
from pixcrawler.celery_core.base import BaseTask

app = get_celery_app()

#: Recording tasks by queue they route to.
RECORD_TASKS = {
    "crawl": "builder.tasks.test_record",
    "validation": "validator.tasks.test_record",
    "default": "test_support.record",
    "maintenance": "celery_core.cleanup_test_record",
}
SLEEP_TASK = "builder.tasks.test_sleep"
BUG_TASK = "test_support.bug"


def _record(task: BaseTask, key: str, label: str) -> str:
    result_client(task.app).rpush(key, label)
    return label


for _name in RECORD_TASKS.values():
    app.task(bind=True, base=BaseTask, name=_name)(_record)


@app.task(bind=True, base=BaseTask, name=SLEEP_TASK)
def sleep_task(self: BaseTask, key: str, seconds: float) -> dict[str, int]:
    """Announce the start, then sleep long enough for a test to kill the process."""
    client = result_client(self.app)
    client.rpush(key, f"start:{os.getpid()}")
    time.sleep(seconds)
    client.rpush(key, f"done:{os.getpid()}")
    return {"pid": os.getpid()}


@app.task(bind=True, base=BaseTask, name=BUG_TASK)
def bug_task(self: BaseTask, marker: str) -> None:
    """A task with a bug in it: what an unforeseen exception looks like in the logs."""
    raise RuntimeError(f"bug {marker}")
