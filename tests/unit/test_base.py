"""BaseTask's policy without a broker: backoff, error classification, envelopes, direct calls."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions
from celery.exceptions import SoftTimeLimitExceeded

from pixcrawler.builder.client import ProtocolError
from pixcrawler.builder.deadline import DeadlinePassed
from pixcrawler.builder.tasks import crawl_task
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.base import ENVELOPE_SCHEMA, backoff_delay, classify, unwrap
from pixcrawler.celery_core.errors import InvalidPayload, TaskError, TransientError
from pixcrawler.celery_core.tasks import health_check
from tests.support import images
from tests.support.http_fixtures import LoopbackHTTPServer, Route


@pytest.mark.parametrize(("base", "maximum"), [(2.0, 600.0), (0.2, 2.0), (1.0, 1.0)])
def test_backoff_delay_stays_within_bounds(base: float, maximum: float) -> None:
    for retries in range(0, 15):
        ceiling = min(maximum, base * 2**retries)
        samples = [backoff_delay(retries, base, maximum) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), retries
        assert max(samples) <= maximum
        # Jitter: the samples are spread out, not one fixed value.
        assert len(set(samples)) > 1


def test_backoff_delay_grows_until_the_cap() -> None:
    lows = [min(backoff_delay(n, 2.0, 600.0) for _ in range(50)) for n in range(12)]
    assert lows[1] >= 2.0 / 2 * 2  # at least half of 4 s on the 2nd retry
    assert lows[5] >= 32.0  # half of 64 s
    assert all(low >= 300.0 for low in lows[9:])  # capped: half of 600 s


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (ConnectionError("refused"), "transient", True),
        (ConnectionResetError("reset"), "transient", True),
        (TimeoutError("slow"), "transient", True),
        (ProtocolError("bad status line"), "transient", True),
        (DeadlinePassed("total time limit"), "transient", True),
        (redis.exceptions.ConnectionError("gone"), "transient", True),
        (redis.exceptions.TimeoutError("slow"), "transient", True),
        (SoftTimeLimitExceeded(), "time_limit", False),
        (TypeError("missing argument"), "invalid_payload", False),
        (ValueError("bad"), "invalid_payload", False),
        (KeyError("x"), "unexpected_error", False),
        (RuntimeError("boom"), "unexpected_error", False),
        (redis.exceptions.ResponseError("WRONGTYPE"), "unexpected_error", False),
    ],
)
def test_classify(exc: BaseException, code: str, retryable: bool) -> None:
    error = classify(exc)
    assert error.code == code
    assert error.retryable is retryable
    assert type(exc).__name__ in error.message or code == "time_limit"


def test_classify_keeps_task_errors() -> None:
    for error in (
        TaskError("not_an_image", "nope", {"a": 1}),
        TransientError("http_error", "HTTP 503", {"status_code": 503}),
        InvalidPayload(message="bad"),
    ):
        assert classify(error) is error
    assert InvalidPayload(message="bad").code == "invalid_payload"


def test_task_error_round_trips_through_the_json_result_backend() -> None:
    backend = get_celery_app().backend
    original = TransientError("http_error", "HTTP 503", {"status_code": 503, "url": "u"})
    stored = json.loads(json.dumps(backend.prepare_exception(original)))
    rebuilt = backend.exception_to_python(stored)
    assert isinstance(rebuilt, TransientError)
    assert (rebuilt.code, rebuilt.message, rebuilt.details) == (
        "http_error",
        "HTTP 503",
        {"status_code": 503, "url": "u"},
    )
    assert str(rebuilt) == "http_error: HTTP 503"


def test_unwrap_passes_only_envelopes_data() -> None:
    assert unwrap({"schema": ENVELOPE_SCHEMA, "data": {"files": ["a"]}}) == {"files": ["a"]}
    assert unwrap({"schema": "other", "data": 1}) == {"schema": "other", "data": 1}
    assert unwrap(["a"]) == ["a"]


def _assert_envelope(result: Any, task: str) -> None:
    assert result["schema"] == ENVELOPE_SCHEMA
    assert result["status"] == "success"
    assert result["task"] == task
    assert result["retries"] == 0
    assert result["duration_ms"] >= 0
    assert result["finished_at"].endswith("+00:00")
    json.dumps(result)  # what a worker stores must be JSON


def test_health_check_called_directly() -> None:
    result = health_check()
    _assert_envelope(result, "celery_core.health_check")
    data = result["data"]
    assert data["hostname"] == socket.gethostname()
    assert set(data["versions"]) == {"pixcrawler", "celery", "kombu", "python"}
    settings = get_celery_app().settings
    assert settings.broker_url.get_secret_value() not in json.dumps(result)


@pytest.fixture(scope="module")
def http(http_server: LoopbackHTTPServer) -> Iterator[LoopbackHTTPServer]:
    """The loopback server, with robots.txt and per-site limits off: both keep their
    state in Redis, which unit tests do not have (tests/integration/test_polite.py)."""
    app = get_celery_app()
    before = app.settings
    app.settings = before.model_copy(
        update={"crawl_obey_robots": False, "crawl_site_limits": False}
    )
    try:
        yield http_server
    finally:
        app.settings = before


def test_crawl_task_called_directly(http: LoopbackHTTPServer) -> None:
    body = images.png("direct-call")
    url = http.add(Route(body=body, content_type="image/png"))
    result = crawl_task(url)
    _assert_envelope(result, "builder.tasks.crawl_task")
    data = result["data"]
    assert (data["succeeded"], data["failed"]) == (1, 0)
    [path] = data["files"]
    with open(path, "rb") as f:
        assert f.read() == body
    assert data["outcomes"][0]["url"] == url


def test_crawl_task_called_directly_with_a_list(http: LoopbackHTTPServer) -> None:
    good = http.add(Route(body=images.jpeg("direct-list")))
    missing = http.add(Route(statuses=[404]))
    data = crawl_task([good, missing])["data"]
    assert (data["succeeded"], data["failed"]) == (1, 1)
    assert [o["status"] for o in data["outcomes"]] == ["ok", "error"]
    assert data["outcomes"][1]["error"] == "http_error"


def test_direct_call_failures_raise_task_errors_without_retrying(
    http: LoopbackHTTPServer,
) -> None:
    with pytest.raises(TaskError) as info:
        crawl_task("file:///etc/passwd")
    assert info.value.code == "unsupported_scheme"
    flaky = http.add(Route(statuses=[503, 200], body=images.png("never")))
    with pytest.raises(TaskError) as info:
        crawl_task(flaky)
    assert info.value.code == "http_error"
    assert http.hits(flaky) == 1  # a direct call is never retried
    for bad in (42, [], ["ok", 3], {"url": "x"}):
        with pytest.raises(TaskError) as info:
            crawl_task(bad)
        assert info.value.code == "invalid_payload"
