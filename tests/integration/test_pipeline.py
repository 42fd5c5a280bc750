"""Crawl and validate through a real worker: the seed's chain, retries, permanent failures.

Everything runs on the session worker (prefork, all queues) against the session Redis;
crawls go only to the loopback HTTP server started by the tests.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from celery import chain
from celery.result import AsyncResult

from pixcrawler.builder.tasks import crawl_task
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.base import ENVELOPE_SCHEMA
from pixcrawler.celery_core.errors import TaskError
from pixcrawler.celery_core.tasks import health_check
from pixcrawler.validator.tasks import validate_task
from tests.support import images
from tests.support.harness import RedisServer, Worker, wait_for
from tests.support.http_fixtures import LoopbackHTTPServer, Route
from tests.support.tasks import RECORD_TASKS

TIMEOUT = 60


def _retry_lines(worker: Worker, task_id: str) -> list[str]:
    return [
        line
        for line in worker.log().splitlines()
        if "event=task_retrying" in line and f"task_id={task_id}" in line
    ]


def _parent(result: AsyncResult[Any]) -> AsyncResult[Any]:
    parent = result.parent
    assert isinstance(parent, AsyncResult)
    return parent


def _failure(result: AsyncResult[Any]) -> TaskError:
    result.get(timeout=TIMEOUT, propagate=False)
    assert result.state == "FAILURE", result.state
    error = result.result
    assert isinstance(error, TaskError), repr(error)
    return error


def test_seed_chain_crawl_then_validate(
    worker: Worker, http_server: LoopbackHTTPServer, storage_dir: Any
) -> None:
    body = images.png("seed-chain", (120, 80))
    url = http_server.add(Route(body=body, content_type="image/png"), "chain")

    workflow = chain(crawl_task.s(url), validate_task.s())
    result = workflow.apply_async()
    validated = result.get(timeout=TIMEOUT)

    assert validated["schema"] == ENVELOPE_SCHEMA
    assert validated["task"] == "validator.tasks.validate_task"
    assert validated["queue"] == "validation"
    data = validated["data"]
    assert (data["duplicates"], data["invalid"]) == (0, 0)
    [path] = data["valid"]
    [outcome] = data["outcomes"]
    assert (outcome["format"], outcome["width"], outcome["height"]) == ("PNG", 120, 80)
    with open(path, "rb") as f:
        assert f.read() == body

    crawled = _parent(result).get(timeout=TIMEOUT)
    assert crawled["task"] == "builder.tasks.crawl_task"
    assert crawled["queue"] == "crawl"
    assert crawled["retries"] == 0
    assert crawled["data"]["files"] == [path]
    assert http_server.hits(url) == 1


def test_same_content_from_two_crawls_is_a_duplicate(
    worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    body = images.jpeg("duplicate")
    first_url = http_server.add(Route(body=body), "dup-a")
    second_url = http_server.add(Route(body=body), "dup-b")

    first = chain(crawl_task.s(first_url), validate_task.s()).apply_async()
    first_data = first.get(timeout=TIMEOUT)["data"]
    second = chain(crawl_task.s(second_url), validate_task.s()).apply_async()
    second_data = second.get(timeout=TIMEOUT)["data"]

    assert first_data["outcomes"][0]["status"] == "valid"
    assert second_data["outcomes"][0]["status"] == "duplicate"
    assert second_data["outcomes"][0]["duplicate_of"] == first.id
    assert (second_data["valid"], second_data["duplicates"]) == ([], 1)
    # Stored once, content-addressed.
    assert _parent(second).get(timeout=TIMEOUT)["data"]["outcomes"][0]["already_stored"] is True


def test_validating_again_in_the_same_task_is_not_a_duplicate(
    worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    """A redelivered validation (same task id) must not call its own image a duplicate."""
    url = http_server.add(Route(body=images.png("revalidate")), "reval")
    path = crawl_task.delay(url).get(timeout=TIMEOUT)["data"]["files"][0]
    task_id = str(uuid.uuid4())
    first = validate_task.apply_async((path,), task_id=task_id).get(timeout=TIMEOUT)
    get_celery_app().backend.forget(task_id)
    again = validate_task.apply_async((path,), task_id=task_id).get(timeout=TIMEOUT)
    assert first["data"]["outcomes"][0]["status"] == "valid"
    assert again["data"]["outcomes"][0]["status"] == "valid"


def test_transient_errors_retry_with_backoff_exactly_once_each(
    worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    url = http_server.add(Route(statuses=[503, 503, 200], body=images.png("flaky")), "flaky")
    result = crawl_task.delay(url)
    envelope = result.get(timeout=TIMEOUT)

    assert result.state == "SUCCESS"
    assert envelope["retries"] == 2
    assert envelope["data"]["succeeded"] == 1
    # Three requests: the two 503s and the 200; no duplicate retry message ran.
    assert http_server.hits(url) == 3
    wait_for(lambda: len(_retry_lines(worker, result.id)) >= 2, 10, "retry log lines")
    lines = _retry_lines(worker, result.id)
    assert len(lines) == 2
    assert "retry=1" in lines[0]
    assert "retry=2" in lines[1]
    # Backoff: each countdown within [base/2, base] * 2**n, capped (0.2 s base, 2 s max).
    countdowns = [float(re.search(r"countdown=([0-9.]+)", line)[1]) for line in lines]  # type: ignore[index]
    assert 0.1 <= countdowns[0] <= 0.2
    assert 0.2 <= countdowns[1] <= 0.4
    # Celery's own line per retry, written by the main process (possibly after the
    # result is stored, hence the wait).
    pattern = rf"{result.id}\] retry: Retry in"
    wait_for(lambda: len(re.findall(pattern, worker.log())) >= 2, 10, "Celery's retry lines")
    assert len(re.findall(pattern, worker.log())) == 2


def test_retries_are_bounded(worker: Worker, http_server: LoopbackHTTPServer) -> None:
    url = http_server.add(Route(statuses=[503]), "down")
    result = crawl_task.delay(url)
    error = _failure(result)
    assert error.code == "http_error"
    assert "503" in error.message
    # TASK_MAX_RETRIES is 3: one try and three retries.
    assert http_server.hits(url) == 4
    wait_for(lambda: len(_retry_lines(worker, result.id)) >= 3, 10, "retry log lines")
    assert len(_retry_lines(worker, result.id)) == 3


def _crawl_failure(http_server: LoopbackHTTPServer, route: Route) -> tuple[TaskError, str, str]:
    url = http_server.add(route, "fail")
    result = crawl_task.delay(url)
    return _failure(result), url, result.id


@pytest.mark.parametrize(
    ("route", "code"),
    [
        (Route(statuses=[404]), "http_error"),
        (Route(body=b"<html>not an image</html>", content_type="image/png"), "not_an_image"),
        (Route(stream_bytes=21 * 1024 * 1024), "too_large"),
        (Route(declared_length=10**10), "too_large"),
        (
            Route(statuses=[302], headers={"Location": "http://169.254.169.254/"}),
            "forbidden_destination",
        ),
        (Route(statuses=[302], headers={"Location": "file:///etc/passwd"}), "unsupported_scheme"),
    ],
    ids=["404", "non-image", "huge-body", "huge-length", "redirect-metadata", "redirect-file"],
)
def test_permanent_crawl_failures(
    worker: Worker, http_server: LoopbackHTTPServer, route: Route, code: str
) -> None:
    error, url, task_id = _crawl_failure(http_server, route)
    assert error.code == code
    assert http_server.hits(url) == 1  # never retried
    assert _retry_lines(worker, task_id) == []
    [outcome] = error.details["outcomes"]
    assert (outcome["error"], outcome["retryable"]) == (code, False)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://[::1]:9/x.png", "forbidden_destination"),
        ("http://10.255.255.1/x.png", "forbidden_destination"),
        ("http://169.254.169.254/latest/meta-data/", "forbidden_destination"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("gopher://127.0.0.1/", "unsupported_scheme"),
    ],
)
def test_forbidden_destinations_fail_without_a_connection(
    worker: Worker, url: str, code: str
) -> None:
    result = crawl_task.delay(url)
    assert _failure(result).code == code
    assert _retry_lines(worker, result.id) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (images.bomb_png(), "decompression_bomb"),
        (images.tiny_png("tiny"), "too_small"),
        (images.png("truncated-int")[:-40], "corrupt_image"),
    ],
    ids=["bomb", "tiny", "truncated"],
)
def test_permanent_validation_failures(
    worker: Worker, http_server: LoopbackHTTPServer, body: bytes, code: str
) -> None:
    url = http_server.add(Route(body=body), "val")
    result = chain(crawl_task.s(url), validate_task.s()).apply_async()
    error = _failure(result)
    assert error.code == code
    assert _parent(result).state == "SUCCESS"  # the download itself was fine
    assert _retry_lines(worker, result.id) == []


@pytest.mark.parametrize(
    ("task", "args", "code"),
    [
        ("validator.tasks.validate_task", ["ab/" + "0" * 64 + ".png"], "missing_file"),
        ("validator.tasks.validate_task", ["/etc/passwd"], "outside_store"),
        ("validator.tasks.validate_task", ["../../etc/passwd"], "outside_store"),
        ("validator.tasks.validate_task", ["."], "missing_file"),  # the store itself
        ("validator.tasks.validate_task", [""], "invalid_payload"),
        ("validator.tasks.validate_task", [42], "invalid_payload"),
        ("validator.tasks.validate_task", [{"files": []}], "invalid_payload"),
        ("builder.tasks.crawl_task", [123], "invalid_payload"),
        ("builder.tasks.crawl_task", [["http://127.0.0.1/", None]], "invalid_payload"),
        ("builder.tasks.crawl_task", [], "invalid_payload"),  # missing argument
        ("builder.tasks.crawl_task", ["a", "b"], "invalid_payload"),  # one too many
    ],
)
def test_bad_arguments_and_missing_files_fail_permanently(
    worker: Worker, task: str, args: list[Any], code: str
) -> None:
    # send_task skips the client's own signature check, as a foreign producer would.
    result = get_celery_app().send_task(task, args=args)
    error = _failure(result)
    assert error.code == code
    assert _retry_lines(worker, result.id) == []


def test_worker_survives_failures_and_still_serves(worker: Worker) -> None:
    """Runs after the failure tests in this module: same worker, still healthy."""
    assert worker.alive
    log = worker.log()
    assert "WorkerLostError" not in log  # no pool process died on a bad input
    assert "Unrecoverable error" not in log
    results = [health_check.delay() for _ in range(4)]
    for result in results:
        envelope = result.get(timeout=TIMEOUT)
        assert envelope["queue"] == "default"
        assert envelope["data"]["hostname"] == worker.name
    assert len(worker.children()) == 2


def test_explicit_queue_is_delivered(worker: Worker, redis_server: RedisServer) -> None:
    """A crawl-family task sent to another queue by hand still reaches a worker."""
    key = f"explicit:{uuid.uuid4().hex}"
    app = get_celery_app()
    result = app.send_task(RECORD_TASKS["crawl"], args=[key, "sent-to-default"], queue="default")
    envelope = result.get(timeout=TIMEOUT)
    assert envelope["queue"] == "default"
    assert redis_server.client(1).lrange(key, 0, -1) == [b"sent-to-default"]


def test_pickle_messages_are_refused(worker: Worker, redis_server: RedisServer) -> None:
    key = f"pickle:{uuid.uuid4().hex}"
    app = get_celery_app()
    app.send_task(RECORD_TASKS["default"], args=[key, "pickled"], serializer="pickle")
    wait_for(lambda: "untrusted content of type pickle" in worker.log(), 30, "the pickle refusal")
    # A JSON message to the same task runs; the pickled one never did.
    app.send_task(RECORD_TASKS["default"], args=[key, "json"]).get(timeout=TIMEOUT)
    assert redis_server.client(1).lrange(key, 0, -1) == [b"json"]
    assert worker.alive
