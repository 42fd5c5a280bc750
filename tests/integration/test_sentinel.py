"""Workers that find the broker through Redis Sentinel keep every guarantee of our
transport: owner records, requeue on restart, results through Sentinel too.

One real master (the role's shipped redis.conf and ACLs) and one real Sentinel watching
it, both on loopback. Failover itself is a multi-host matter (the Molecule drill); here
the point is that the sentinel:// path runs the same transport code as redis://.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pixcrawler.celery_core.transport import UNACKED_OWNER_KEY
from tests.support.harness import (
    SentinelServer,
    Worker,
    client_app,
    running,
    unacked_owners,
    wait_for,
    watched_master,
)
from tests.support.tasks import SLEEP_TASK

PASSWORD = "sentinel-test-" + "p" * 16


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServer]:
    with watched_master(tmp_path_factory.mktemp("sentinel"), PASSWORD) as watcher:
        yield watcher


def test_a_killed_worker_behind_sentinel_gets_its_tasks_back_at_restart(
    sentinel: SentinelServer, tmp_path: Path
) -> None:
    env = sentinel.env(tmp_path / "images", broker_db=2)
    broker = sentinel.master.client(2)
    results = sentinel.master.client(3)
    node = "crawl@sentinel-test"
    key = f"sentinel-kill:{time.monotonic_ns()}"

    def worker() -> Worker:
        return Worker(
            env,
            queues="crawl",
            logdir=tmp_path,
            include="tests.support.tasks",
            pool="threads",
            concurrency=2,
            name=node,
        )

    first = worker()
    with client_app(env) as app:
        first.start()
        try:
            sent = [app.send_task(SLEEP_TASK, args=[key, 4], queue="crawl") for _ in range(2)]
            wait_for(lambda: results.llen(key) == 2, 30, "both tasks to start")
            assert unacked_owners(broker) == {node: 2}, "owner records written through Sentinel"
        finally:
            first.kill()
        started = time.monotonic()
        with running(worker()) as second:
            for result in sent:
                assert result.get(timeout=60)["status"] == "success"
            # Back at once, not after VISIBILITY_TIMEOUT (an hour by default).
            assert time.monotonic() - started < 60
            wait_for(lambda: broker.hlen(UNACKED_OWNER_KEY) == 0, 10, "the acks")
        logs = first.log() + second.log()
    assert PASSWORD not in logs
    labels = [r.decode() if isinstance(r, bytes) else r for r in results.lrange(key, 0, -1)]
    # Started by the killed worker, started again by its restart, finished once each.
    assert sum(label.startswith("start:") for label in labels) == 4, labels
    assert sum(label.startswith("done:") for label in labels) == 2, labels


def test_sentinel_password_is_required_and_never_shown(
    sentinel: SentinelServer, tmp_path: Path
) -> None:
    wrong = redis.Redis(host="127.0.0.1", port=sentinel.port, password="wrong")
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.sentinel_masters()
    env = sentinel.env(tmp_path / "images", broker_db=4)
    with client_app(env) as app:
        conf = app.conf.humanize(with_defaults=False, censored=True)
    assert sentinel.password not in conf
    assert PASSWORD not in conf
