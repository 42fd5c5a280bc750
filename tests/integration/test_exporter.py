"""``pixcrawler exporter`` against a real redis-server (the role's ACLs) and a real worker.

The exporter runs as a user with exactly :data:`pixcrawler.exporter.REDIS_ACL_RULES`, so
every test here also proves those rules are enough (Redis's ACL LOG stays empty) and that
the user cannot write.
"""

from __future__ import annotations

import logging
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from pixcrawler.celery_core.config import load_settings
from pixcrawler.exporter import REDIS_ACL_RULES
from pixcrawler.exporter.server import Exporter, start
from tests.support.harness import RedisServer, Worker, client_app, running, settings_env, wait_for
from tests.support.tasks import RECORD_TASKS, SLEEP_TASK

PASSWORD = "exporter-test-" + "q" * 16
EXPORTER_USER = "pixcrawler-exporter"
EXPORTER_PASSWORD = PASSWORD + "-exp"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(exporter: Exporter) -> tuple[str, Samples]:
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def exporter_env(server: RedisServer, storage: Path) -> dict[str, str]:
    url = f"redis://{EXPORTER_USER}:{EXPORTER_PASSWORD}@127.0.0.1:{server.port}"
    return settings_env(server, storage, broker_url=f"{url}/0", result_backend=f"{url}/1")


def shipped_server(directory: Path) -> RedisServer:
    line = f"user {EXPORTER_USER} on >{EXPORTER_PASSWORD} {REDIS_ACL_RULES}"
    return RedisServer(directory, PASSWORD, shipped=True, extra_users=[line])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = shipped_server(tmp_path_factory.mktemp("exporter") / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exporter(broker: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    storage = tmp_path_factory.mktemp("exporter-images")
    running_exporter = start(load_settings(exporter_env(broker, storage)), port=0)
    wait_for(running_exporter.follower.connected.is_set, 15, "the event subscription")
    yield running_exporter
    running_exporter.stop()


def test_backlog_age_consumers_unacked_and_outcomes(
    broker: RedisServer, exporter: Exporter, tmp_path: Path
) -> None:
    env = settings_env(broker, tmp_path / "images")
    key = f"exporter:{uuid.uuid4().hex}"
    # kombu's list names, written out here rather than taken from the code under test.
    crawl_lists = ["crawl", *(f"crawl\x06\x16{p}" for p in (3, 6, 9))]
    with client_app(env) as app:
        plain = [app.send_task(RECORD_TASKS["crawl"], args=[key, f"p{i}"]) for i in range(3)]
        bucketed = [
            app.send_task(RECORD_TASKS["crawl"], args=[key, f"b{i}"], priority=6) for i in range(2)
        ]
        admin = broker.client(0)
        # The priority-6 tasks are in a list of their own, which one-list exporters miss.
        assert admin.llen(crawl_lists[0]) == 3
        assert sum(admin.llen(k) for k in crawl_lists[1:]) == 2

        _, first = scrape(exporter)
        assert value(first, "pixcrawler_queue_backlog", queue="crawl") == 5
        assert value(first, "pixcrawler_queue_consumers", queue="crawl") == 0
        age = value(first, "pixcrawler_queue_oldest_message_age_seconds", queue="crawl")
        assert age > 0
        wait_for(
            lambda: value(scrape(exporter)[1], "pixcrawler_queue_oldest_message_age_seconds",
                          queue="crawl") > age,
            10,
            "the oldest message to get older",
        )  # fmt: skip

        worker = Worker(
            env,
            queues="crawl",
            logdir=tmp_path,
            include="tests.support.tasks",
            pool="threads",
            concurrency=2,
            name="crawl@exporter-test",
        )
        with running(worker):
            for result in plain + bucketed:
                assert result.get(timeout=30)["status"] == "success"
            wait_for(
                lambda: (
                    value(scrape(exporter)[1], "pixcrawler_queue_consumers", queue="crawl") == 1
                ),
                15,
                "the worker's heartbeat",
            )
            _, drained = scrape(exporter)
            assert value(drained, "pixcrawler_queue_backlog", queue="crawl") == 0
            assert value(drained, "pixcrawler_queue_oldest_message_age_seconds", queue="crawl") == 0
            assert value(drained, "pixcrawler_queue_consumers", queue="validation") == 0

            sleeping = app.send_task(SLEEP_TASK, args=[key, 2])
            wait_for(
                lambda: value(scrape(exporter)[1], "pixcrawler_queue_unacked", queue="crawl") == 1,
                15,
                "the running task's unacknowledged delivery",
            )
            sleeping.get(timeout=30)

            bad = app.send_task("builder.tasks.crawl_task", args=[123])
            bad.get(timeout=30, propagate=False)
            assert bad.state == "FAILURE"

            def outcomes() -> Samples:
                return scrape(exporter)[1]

            record = {"queue": "crawl", "task": RECORD_TASKS["crawl"]}
            wait_for(
                lambda: (
                    value(
                        outcomes(),
                        "pixcrawler_task_outcomes_total",
                        queue="crawl",
                        task="builder.tasks.crawl_task",
                        outcome="failed",
                        code="invalid_payload",
                    )
                    == 1
                ),
                15,
                "the failure by its code",
            )
            final = outcomes()
            assert (
                value(
                    final, "pixcrawler_task_outcomes_total", **record, outcome="succeeded", code=""
                )
                == 5
            )
            assert value(final, "pixcrawler_task_runtime_seconds_count", **record) == 5
            assert value(final, "pixcrawler_queue_unacked", queue="crawl") == 0
    assert value(final, "pixcrawler_exporter_scrape_errors_total", part="queues") == 0
    assert not broker.client().acl_log(), "the exporter was refused something by the ACL"


def test_redis_memory_and_persistence(broker: RedisServer, exporter: Exporter) -> None:
    admin = broker.client()
    admin.config_set("maxmemory", str(64 * 1024 * 1024))
    try:
        _, samples = scrape(exporter)
    finally:
        admin.config_set("maxmemory", "0")
    used = value(samples, "pixcrawler_redis_used_memory_bytes")
    assert 0 < used < 64 * 1024 * 1024
    assert value(samples, "pixcrawler_redis_maxmemory_bytes") == 64 * 1024 * 1024
    assert value(samples, "pixcrawler_redis_aof_enabled") == 1
    assert value(samples, "pixcrawler_redis_aof_last_write_ok") == 1
    assert value(samples, "pixcrawler_redis_role", role="master") == 1
    assert value(samples, "pixcrawler_redis_connected_replicas") == 0


def test_the_exporter_user_cannot_write(broker: RedisServer) -> None:
    client = redis.Redis(
        host="127.0.0.1", port=broker.port, username=EXPORTER_USER, password=EXPORTER_PASSWORD
    )
    try:
        assert client.llen("crawl") >= 0
        for command in (
            ("LPUSH", "crawl", "x"),
            ("DEL", "unacked"),
            ("PUBLISH", "/0.celeryev/worker.heartbeat", "x"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()
        broker.client().acl_log_reset()


def test_keeps_serving_while_redis_is_down_and_shows_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pixcrawler.exporter")
    server = shipped_server(tmp_path / "redis")
    server.start()
    settings = load_settings(exporter_env(server, tmp_path / "images"))
    running_exporter = start(settings, port=0)
    try:
        wait_for(running_exporter.follower.connected.is_set, 15, "the event subscription")
        _, before = scrape(running_exporter)
        assert value(before, "pixcrawler_exporter_scrape_errors_total", part="queues") == 0
        server.stop()
        texts = []
        for _ in range(2):
            text, down = scrape(running_exporter)
            texts.append(text)
        assert value(down, "pixcrawler_exporter_scrape_errors_total", part="queues") == 2
        assert value(down, "pixcrawler_exporter_scrape_errors_total", part="redis") == 2
        assert ("pixcrawler_queue_backlog", frozenset({("queue", "crawl")})) not in down
        wait_for(
            lambda: value(scrape(running_exporter)[1], "pixcrawler_exporter_scrape_errors_total",
                          part="events") > 0,
            15,
            "the event subscription's failure to be counted",
        )  # fmt: skip
        server.start()
        wait_for(
            lambda: (
                ("pixcrawler_queue_backlog", frozenset({("queue", "crawl")}))
                in scrape(running_exporter)[1]
            ),
            15,
            "the queues once Redis is back",
        )
        wait_for(running_exporter.follower.connected.is_set, 15, "the events once Redis is back")
    finally:
        running_exporter.stop()
        server.stop()
    shown = "\n".join(texts) + caplog.text
    assert "exporter part queues failing" in caplog.text
    for secret in (PASSWORD, EXPORTER_PASSWORD):
        assert secret not in shown
