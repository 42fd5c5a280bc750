"""Crawl batches on a real threads-pool worker (as the crawl queue runs in production):
concurrent downloads, retries of only what failed, Retry-After, the total time limit,
and URL credentials sent as Basic auth yet never shown.

The worker has its own broker databases (6 and 7) and settings small enough to observe:
a one-second total limit, a one-second Retry-After cap, 0.2 s backoff.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from pixcrawler.celery_core.errors import TaskError
from tests.support import images
from tests.support.harness import RedisServer, Worker, client_app, settings_env, wait_for
from tests.support.http_fixtures import LoopbackHTTPServer, Route

TIMEOUT = 60
SECRET = "batch-pw-" + "q" * 12


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, storage_dir: Path) -> dict[str, str]:
    return settings_env(
        redis_server,
        storage_dir,
        broker_url=redis_server.url(6),
        result_backend=redis_server.url(7),
        crawl_total_timeout="1",
        crawl_read_timeout="5",
        crawl_retry_after_max="1",
        crawl_batch_concurrency="4",
    )


@pytest.fixture(scope="module")
def crawl_worker(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(env, "crawl", logdir=tmp_path_factory.mktemp("batch"), pool="threads", concurrency=4)
    w.start()
    yield w
    w.stop()
    w.kill()


@pytest.fixture(scope="module")
def app(env: dict[str, str], crawl_worker: Worker) -> Iterator[Celery]:
    with client_app(env) as client:
        yield client


def _crawl(app: Celery, urls: str | list[str]) -> AsyncResult[Any]:
    return app.send_task("builder.tasks.crawl_task", args=[urls])


def _countdowns(worker: Worker, task_id: str) -> list[float]:
    lines = [
        line
        for line in worker.log().splitlines()
        if "event=task_retrying" in line and f"task_id={task_id}" in line
    ]
    return [float(re.search(r"countdown=([0-9.]+)", line)[1]) for line in lines]  # type: ignore[index]


def test_a_batch_retries_only_the_urls_that_failed(
    app: Celery, crawl_worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    urls = [
        http_server.add(Route(body=images.png("batch-a")), "ok"),
        http_server.add(Route(statuses=[404]), "gone"),
        http_server.add(Route(statuses=[503, 200], body=images.png("batch-b")), "flaky"),
        http_server.add(Route(body=images.jpeg("batch-c")), "ok"),
        http_server.add(Route(statuses=[503, 503, 200], body=images.png("batch-d")), "flaky"),
    ]
    envelope = _crawl(app, urls).get(timeout=TIMEOUT)
    data = envelope["data"]
    assert envelope["retries"] == 2
    assert [o["url"] for o in data["outcomes"]] == urls
    assert [o["status"] for o in data["outcomes"]] == ["ok", "error", "ok", "ok", "ok"]
    assert data["outcomes"][1]["error"] == "http_error"
    assert (data["succeeded"], data["failed"]) == (4, 1)
    assert len(data["files"]) == 4
    # Each URL fetched until its outcome was final, and never again.
    assert [http_server.hits(u) for u in urls] == [1, 1, 2, 1, 3]


def test_retry_after_is_honoured_and_capped(
    app: Celery, crawl_worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    """Backoff alone would wait 0.1 to 0.2 s; the server's 1 s is honoured, its hour
    is capped at CRAWL_RETRY_AFTER_MAX (1 s here)."""
    polite = http_server.add(
        Route(statuses=[429, 200], body=images.png("ra-1"), headers={"Retry-After": "1"})
    )
    greedy = http_server.add(
        Route(statuses=[503, 200], body=images.png("ra-2"), headers={"Retry-After": "3600"})
    )
    for url in (polite, greedy):
        result = _crawl(app, url)
        assert result.get(timeout=TIMEOUT)["data"]["succeeded"] == 1
        wait_for(lambda r=result: _countdowns(crawl_worker, r.id), 10, "the retry line")
        assert _countdowns(crawl_worker, result.id) == [1.0]
        assert http_server.hits(url) == 2


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_trickling_server_is_cut_off_at_the_total_timeout(
    app: Celery, crawl_worker: Worker, http_server: LoopbackHTTPServer, part: str
) -> None:
    url = http_server.add(
        Route(body=images.png("trickle", (8, 8)), drip=0.05, drip_part=part), "drip"
    )
    result = _crawl(app, url)
    result.get(timeout=TIMEOUT, propagate=False)
    error = result.result
    assert isinstance(error, TaskError), repr(error)
    assert error.code == "timeout"
    assert error.details["outcomes"][0]["retryable"] is True
    # One try and three retries, each hung up on before the server was done.
    wait_for(lambda: len(http_server.ends(url)) == 4, 30, "every trickle to end")
    assert http_server.ends(url) == ["cut off"] * 4


def test_basic_auth_works_and_the_password_shows_nowhere(
    app: Celery,
    crawl_worker: Worker,
    http_server: LoopbackHTTPServer,
    redis_server: RedisServer,
) -> None:
    url = http_server.add(Route(body=images.png("auth"), auth=("crawler", SECRET)), "auth")
    with_creds = url.replace("http://", f"http://crawler:{SECRET}@")
    flaky = http_server.add(
        Route(statuses=[503, 200], body=images.png("auth-2"), auth=("crawler", SECRET)), "auth"
    )
    result = _crawl(app, [with_creds, flaky.replace("http://", f"http://crawler:{SECRET}@")])
    data = result.get(timeout=TIMEOUT)["data"]
    assert [o["status"] for o in data["outcomes"]] == ["ok", "ok"]
    assert [o["url"] for o in data["outcomes"]] == [url, flaky]
    results = redis_server.client(7)
    stored = repr([results.get(key) for key in results.keys("*")])
    assert result.id in stored  # the result is among what was searched
    assert SECRET not in stored
    assert SECRET not in crawl_worker.log()
    assert http_server.requests(url)[0]["Authorization"].startswith("Basic ")
