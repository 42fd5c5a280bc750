"""The trivial task of the throughput benchmark, loaded with ``-I benchmarks.bench_tasks``.

It goes through :class:`BaseTask` like every production task, so the envelope, logging
and retry wrapper are part of what is measured; only the work itself is empty. The name
matches no routing glob, so it lands on the ``default`` queue.
"""

from __future__ import annotations

from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.base import BaseTask

app = get_celery_app()

NOOP = "bench.noop"


@app.task(bind=True, base=BaseTask, name=NOOP)
def noop(self: BaseTask, index: int) -> int:
    return index
