"""No secret leaks: not into results, the worker log, ``ps``, or task events; neither the
Redis password nor the S3 secret key (also not into ``config show`` or ``inspect conf``).

This module runs after the other integration modules (alphabetical order), so the
session worker's log and the result backend hold everything the suite did; the checks
also start their own traffic so they mean something when run alone.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chain

from pixcrawler.builder.tasks import crawl_task
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.tasks import health_check
from tests.conftest import REDIS_PASSWORD
from tests.support import images
from tests.support.harness import RedisServer, Worker, client_app, running, settings_env
from tests.support.http_fixtures import LoopbackHTTPServer, Route
from tests.support.paths import REPO
from tests.support.seaweed import SeaweedServer
from tests.support.verify_cli import operator_env, write_env_file

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


# --- the S3 secret key, checked like the broker password -------------------------------------


@pytest.fixture(scope="module")
def s3_worker(
    seaweed_server: SeaweedServer,
    http_server: LoopbackHTTPServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Worker, RedisServer, list[Any]]]:
    """A worker storing in S3 (own Redis), after successes and failures that touch the store."""
    workdir = tmp_path_factory.mktemp("secrets-s3")
    redis_server = RedisServer(workdir / "redis", "s3sec-" + secrets.token_hex(12))
    redis_server.start()
    env = settings_env(redis_server, workdir / "local")
    env.update(seaweed_server.env(prefix="secrets"))
    worker = Worker(env, logdir=workdir)
    try:
        with running(worker), client_app(env) as app:
            good = http_server.add(Route(body=images.png("s3-secrets")), "s3-secret-ok")
            results = [
                chain(
                    app.signature("builder.tasks.crawl_task", args=(good,)),
                    app.signature("validator.tasks.validate_task"),
                ).apply_async(),
                app.send_task("validator.tasks.validate_task", args=["s3://other/x/ab/cd.png"]),
                app.send_task("celery_core.cleanup_storage"),
            ]
            outcomes = [r.get(timeout=TIMEOUT, propagate=False) for r in results]
            conf = app.control.inspect(timeout=5).conf()
            yield worker, redis_server, [*outcomes, conf]
    finally:
        redis_server.stop()


def test_s3_secret_is_in_the_environment_under_test(
    s3_worker: tuple[Worker, RedisServer, list[Any]], seaweed_server: SeaweedServer
) -> None:
    """Guards the checks below: the worker really signs with the secret, and succeeds."""
    worker, _redis, outcomes = s3_worker
    secret = seaweed_server.app.secret_key
    assert worker.env["PIXCRAWLER_CELERY_STORAGE_S3_SECRET_ACCESS_KEY"] == secret
    assert outcomes[0]["data"]["valid"][0].startswith("s3://images/secrets/")
    assert outcomes[3], "no worker answered inspect conf"


def test_no_s3_secret_in_results_log_inspect_or_ps(
    s3_worker: tuple[Worker, RedisServer, list[Any]], seaweed_server: SeaweedServer
) -> None:
    worker, redis_server, outcomes = s3_worker
    secret = seaweed_server.app.secret_key
    assert secret not in repr(outcomes)  # results, and `celery inspect conf` of the worker
    client = redis_server.client(1)
    keys = list(client.scan_iter(match="celery-task-meta-*"))
    assert len(keys) >= 3
    for key in keys:
        assert secret.encode() not in (client.get(key) or b""), key
    assert secret not in worker.log()
    args = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    leaking = [line.split(maxsplit=1)[0] for line in args.splitlines() if secret in line]
    assert not leaking, f"programs whose command line carries the S3 secret: {leaking}"


def test_no_s3_secret_in_config_show_or_celery_inspect_conf(
    s3_worker: tuple[Worker, RedisServer, list[Any]],
    seaweed_server: SeaweedServer,
    tmp_path: Path,
) -> None:
    """The operator's views of the settings, as subprocesses reading an env file."""
    worker, _redis, _outcomes = s3_worker
    secret = seaweed_server.app.secret_key
    env_file = write_env_file(tmp_path / "pixcrawler.env", worker.env)
    shell = {**operator_env(), "PIXCRAWLER_ENV_FILE": str(env_file)}
    commands = [
        [sys.executable, "-m", "pixcrawler.cli", "config", "show"],
        [sys.executable, "-m", "pixcrawler.cli", "config", "show", "--json"],
        [sys.executable, "-m", "celery", "-A", "pixcrawler.celery_core.app", "inspect", "conf"],
    ]
    for command in commands:
        proc = subprocess.run(
            command, capture_output=True, text=True, env=shell, cwd=REPO, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert secret not in proc.stdout + proc.stderr, command[2:]
    assert (
        "PIXCRAWLER_CELERY_STORAGE_S3_SECRET_ACCESS_KEY=***"
        in subprocess.run(
            commands[0], capture_output=True, text=True, env=shell, cwd=REPO, timeout=60, check=True
        ).stdout
    )
