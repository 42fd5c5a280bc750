"""No secret leaks: not into results, the worker log, ``ps``, or task events.

This module runs after the other integration modules (alphabetical order), so the
session worker's log and the result backend hold everything the suite did; the checks
also start their own traffic so they mean something when run alone.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pixcrawler.builder.tasks import crawl_task
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.tasks import health_check
from tests.conftest import REDIS_PASSWORD
from tests.support import images
from tests.support.harness import RedisServer, Worker
from tests.support.http_fixtures import LoopbackHTTPServer, Route

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
    # -ww: without it ps cuts each line at its output width (80 columns when not on a
    # terminal). A checkout under a longer path then cut the worker's own line before
    # "worker", and a password past column 80 would never have been seen at all.
    assert worker.proc is not None
    assert redis_server.proc is not None
    own = subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", f"{worker.proc.pid},{redis_server.proc.pid}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "celery -A pixcrawler.celery_core.app worker" in own, own
    assert "redis-server" in own, own
    args = subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    # Name the offending processes, never the password.
    leaking = [line.split(maxsplit=1)[0] for line in args.splitlines() if REDIS_PASSWORD in line]
    assert REDIS_PASSWORD not in own, "the worker's or Redis's own command line"
    assert not leaking, f"programs whose command line carries the password: {leaking}"


def test_task_messages_mask_url_passwords_in_their_readable_copies() -> None:
    """What Celery copies for humans (headers, events) is masked; the task's own args are not."""
    url = f"http://crawler:{URL_SECRET}@images.example/x.png"
    msg = get_celery_app().amqp.create_task_message(
        "id-1", "builder.tasks.crawl_task", (url,), {"referer": url}, create_sent_event=True
    )
    copies = [msg.headers["argsrepr"], msg.headers["kwargsrepr"]]
    copies += [msg.sent_event["args"], msg.sent_event["kwargs"]]
    for text in copies:
        assert URL_SECRET not in text
        assert "crawler:***@images.example" in text
    assert msg.body[0] == (url,)
    assert msg.body[1] == {"referer": url}


def test_no_secret_in_task_events(worker: Worker, http_server: LoopbackHTTPServer) -> None:
    """Flower shows (and keeps) the args of task-sent and task-received events."""
    app = get_celery_app()
    seen: list[dict[str, Any]] = []
    arrived = threading.Condition()

    def record(event: dict[str, Any]) -> None:
        with arrived:
            seen.append(event)
            arrived.notify_all()

    def wait_for(predicate: Callable[[], bool]) -> None:
        with arrived:
            assert arrived.wait_for(predicate, timeout=TIMEOUT), [e["type"] for e in seen]

    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": record})
        capture = threading.Thread(
            target=receiver.capture, kwargs={"timeout": TIMEOUT, "wakeup": False}, daemon=True
        )
        capture.start()
        try:
            # The worker's heartbeats (every 2 s) show the subscription is live.
            wait_for(lambda: any(e["type"] == "worker-heartbeat" for e in seen))
            url = http_server.add(Route(body=images.png("events")), "secret-events")
            result = crawl_task.delay(url.replace("http://", f"http://user:{URL_SECRET}@"))
            result.get(timeout=TIMEOUT)
            wait_for(
                lambda: any(
                    e.get("uuid") == result.id and e["type"] == "task-succeeded" for e in seen
                )
            )
        finally:
            receiver.should_stop = True
            capture.join(timeout=TIMEOUT)
    mine = {e["type"]: e for e in seen if e.get("uuid") == result.id}
    assert {"task-sent", "task-received"} <= set(mine), sorted(mine)
    for kind in ("task-sent", "task-received"):
        assert "user:***@127.0.0.1" in mine[kind]["args"], mine[kind]["args"]
    assert URL_SECRET not in repr(seen)
