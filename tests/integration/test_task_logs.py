"""What a failed task leaves in the worker's log: one line for an expected failure, a
traceback for a bug.

Expected failures (bad input, a refused destination, not an image) are everyday work for
a crawler; logging each with a traceback at ERROR buries the real bugs and trips alerts.
"""

from __future__ import annotations

import uuid

from pixcrawler.celery_core.app import get_celery_app
from tests.support.harness import Worker, wait_for
from tests.support.tasks import BUG_TASK


def _lines_with(log: str, marker: str) -> list[str]:
    return [line for line in log.splitlines() if marker in line]


def test_expected_failure_is_one_line_and_a_bug_keeps_its_traceback(worker: Worker) -> None:
    app = get_celery_app()
    bad = app.send_task("builder.tasks.crawl_task", args=[123])
    assert bad.get(timeout=30, propagate=False) is not None
    assert bad.state == "FAILURE"
    wait_for(lambda: bad.id in worker.log(), 10, "the failure in the log")
    lines = _lines_with(worker.log(), bad.id)
    ours = [line for line in lines if "event=task_failed" in line]
    assert len(ours) == 1, lines
    assert "WARNING" in ours[0]
    assert "invalid_payload" in ours[0]
    assert not [line for line in lines if "raised unexpected" in line], lines
    assert not [line for line in lines if "ERROR" in line], lines

    marker = uuid.uuid4().hex
    bug = app.send_task(BUG_TASK, args=[marker])
    bug.get(timeout=30, propagate=False)
    assert bug.state == "FAILURE"
    wait_for(lambda: f"RuntimeError: bug {marker}" in worker.log(), 10, "the bug's traceback")
    log = worker.log()
    failed = next(line for line in _lines_with(log, bug.id) if "event=task_failed" in line)
    assert "ERROR" in failed
    # The lines after ours, up to the next log record, are its traceback.
    following = log[log.index(failed) + len(failed) :].lstrip("\n").split("\n[")[0]
    assert following.startswith("Traceback (most recent call last)"), following[:300]
    assert f"RuntimeError: bug {marker}" in following
