"""No secret leaks: not into results, not into the worker log, not into ``ps``.

This module runs after the other integration modules (alphabetical order), so the
session worker's log and the result backend hold everything the suite did; the checks
also start their own traffic so they mean something when run alone.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from pixcrawler.builder.tasks import crawl_task
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.tasks import health_check
from tests import images
from tests.conftest import REDIS_PASSWORD
from tests.harness import RedisServer, Worker
from tests.http_fixtures import LoopbackHTTPServer, Route

pytestmark = pytest.mark.integration

TIMEOUT = 60
URL_SECRET = "url-pw-0a1b2c3d"


@pytest.fixture(scope="module")
def traffic(worker: Worker, http_server: LoopbackHTTPServer) -> list[Any]:
    """Successes and failures whose results and log lines could carry a secret."""
    good = http_server.add(Route(body=images.png("secrets")), "secret-ok")
    missing = http_server.add(Route(statuses=[404]), "secret-404")

    def creds(url: str) -> str:
        return url.replace("http://", f"http://user:{URL_SECRET}@")

    results = [
        health_check.delay(),
        crawl_task.delay(creds(good)),
        crawl_task.delay(creds(missing)),
        crawl_task.delay([creds(good), creds(missing)]),
        get_celery_app().send_task("validator.tasks.validate_task", args=["/etc/shadow"]),
    ]
    return [r.get(timeout=TIMEOUT, propagate=False) for r in results]


def test_password_is_in_the_environment_under_test(worker: Worker) -> None:
    """Guards the other checks: the worker really authenticates with the password."""
    assert REDIS_PASSWORD in worker.env["PIXCRAWLER_CELERY_BROKER_URL"]
    assert REDIS_PASSWORD in worker.env["PIXCRAWLER_CELERY_RESULT_BACKEND"]
    assert worker.alive


def test_no_secret_in_task_results(traffic: list[Any], redis_server: RedisServer) -> None:
    assert len(traffic) == 5
    for result in traffic:
        assert REDIS_PASSWORD not in repr(result)
        assert URL_SECRET not in repr(result)
    client = redis_server.client(1)
    keys = list(client.scan_iter(match="celery-task-meta-*"))
    assert len(keys) >= len(traffic)
    for key in keys:
        raw = client.get(key) or b""
        assert REDIS_PASSWORD.encode() not in raw, key
        assert URL_SECRET.encode() not in raw, key


def test_no_secret_in_the_worker_log(traffic: list[Any], worker: Worker) -> None:
    log = worker.log()
    assert "redis://:**@127.0.0.1" in log  # the banner was written, with the URL masked
    assert REDIS_PASSWORD not in log
    assert URL_SECRET not in log


def test_no_secret_in_ps_output(worker: Worker, redis_server: RedisServer) -> None:
    args = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "celery -A pixcrawler.celery_core.app worker" in args
    assert "redis-server" in args
    assert REDIS_PASSWORD not in args
