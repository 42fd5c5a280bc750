"""Crashes, broker restarts and queue priority, each with its own worker and Redis DBs.

These tests need "no worker consuming yet" or a short visibility timeout, so none of them
can use the session worker: each gets broker/result DBs (or a whole redis-server) that
nothing else reads, and a client app of its own pointed at them. Session DBs 0/1 belong
to the session worker; this module uses 8-15 of the session redis-server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from pixcrawler.celery_core.errors import TaskError
from pixcrawler.celery_core.queues import PRIORITY_STEPS, queue_spec
from pixcrawler.celery_core.transport import UNACKED_OWNER_KEY
from tests.conftest import REDIS_PASSWORD
from tests.support.harness import (
    RedisServer,
    Worker,
    client_app,
    settings_env,
    unacked_owners,
    wait_for,
)
from tests.support.tasks import RECORD_TASKS, SLEEP_TASK

TIMEOUT = 60
SEP = "\x06\x16"  # kombu's separator between a queue name and its priority bucket


@contextmanager
def started(worker: Worker) -> Iterator[Worker]:
    """Like ``harness.running`` but without the warm shutdown, which these tests do not
    examine and which costs seconds per worker."""
    worker.start()
    try:
        yield worker
    finally:
        worker.kill()


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert REDIS_PASSWORD not in text


def _short_visibility_env(redis_server: RedisServer, storage: Path, db: int) -> dict[str, str]:
    # VISIBILITY_TIMEOUT must exceed TASK_TIME_LIMIT and TASK_RETRY_BACKOFF_MAX (config rules).
    return settings_env(
        redis_server,
        storage,
        broker_url=redis_server.url(db),
        result_backend=redis_server.url(db + 1),
        visibility_timeout="6",
        task_time_limit="5",
        task_soft_time_limit="4",
        task_retry_backoff_max="2",
    )


def _labels(client: Any, key: str) -> list[str]:
    return [item.decode() for item in client.lrange(key, 0, -1)]


@pytest.fixture(scope="module")
def short_env(redis_server: RedisServer, storage_dir: Path) -> dict[str, str]:
    return _short_visibility_env(redis_server, storage_dir, db=8)


@pytest.fixture(scope="module")
def short_worker(
    short_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One process, short time limits; the tests here kill its children, never it."""
    logdir = tmp_path_factory.mktemp("short-worker")
    worker = Worker(short_env, logdir=logdir, include="tests.support.tasks", concurrency=1)
    with started(worker):
        yield worker
    _no_secret(worker.log())


@pytest.fixture(scope="module")
def short_app(short_env: dict[str, str]) -> Iterator[Celery]:
    with client_app(short_env) as app:
        yield app


def test_task_survives_its_pool_process_being_killed(
    short_worker: Worker, short_app: Celery, redis_server: RedisServer
) -> None:
    """acks_late + reject_on_worker_lost: the main process requeues the lost task."""
    results = redis_server.client(9)
    key = f"child-kill:{uuid.uuid4().hex}"
    result = short_app.send_task(SLEEP_TASK, args=[key, 2])
    wait_for(lambda: _labels(results, key)[:1] != [], 30, "the task to start")
    [child] = short_worker.children()
    assert _labels(results, key) == [f"start:{child}"]
    os.kill(child, signal.SIGKILL)
    envelope = result.get(timeout=TIMEOUT)
    assert result.state == "SUCCESS"
    assert short_worker.alive
    second = envelope["data"]["pid"]
    assert second != child
    assert _labels(results, key) == [f"start:{child}", f"start:{second}", f"done:{second}"]
    assert "WorkerLostError" in short_worker.log()


def test_soft_time_limit_ends_the_task_as_failure(
    short_worker: Worker, short_app: Celery, redis_server: RedisServer
) -> None:
    """TASK_SOFT_TIME_LIMIT (4 s here) interrupts the task; the pool process lives on."""
    results = redis_server.client(9)
    key = f"soft-limit:{uuid.uuid4().hex}"
    result = short_app.send_task(SLEEP_TASK, args=[key, 30])
    result.get(timeout=TIMEOUT, propagate=False)
    assert result.state == "FAILURE"
    assert isinstance(result.result, TaskError)
    assert result.result.code == "time_limit"
    [started_in] = _labels(results, key)  # started, never finished
    assert short_worker.children() == [int(started_in.removeprefix("start:"))]
    # The same process serves the next task.
    after = short_app.send_task(RECORD_TASKS["default"], args=[key, "after"])
    assert after.get(timeout=TIMEOUT)["status"] == "success"


def test_task_survives_the_whole_worker_being_killed(
    redis_server: RedisServer, storage_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL of every worker process: the message stays unacked in Redis, and kombu
    hands it out again once VISIBILITY_TIMEOUT has passed. A starting worker sweeps the
    unacked index once at startup (later sweeps are far apart), so the replacement is
    started after the timeout, as systemd's restart of a crashed worker would be."""
    env = _short_visibility_env(redis_server, storage_dir, db=10)
    visibility = float(env["PIXCRAWLER_CELERY_VISIBILITY_TIMEOUT"])
    broker, results = redis_server.client(10), redis_server.client(11)
    key = f"group-kill:{uuid.uuid4().hex}"
    first = Worker(env, logdir=tmp_path, include="tests.support.tasks", concurrency=1)
    with client_app(env) as app:
        with started(first):
            result = app.send_task(SLEEP_TASK, args=[key, 3])
            wait_for(lambda: _labels(results, key)[:1] != [], 30, "the task to start")
            first.kill()
            assert not first.alive
        assert _labels(results, key)[-1].startswith("start:")  # it never finished
        unacked: list[tuple[bytes, float]] = list(
            broker.zrange("unacked_index", 0, -1, withscores=True)  # type: ignore[arg-type]
        )
        [(tag, delivered_at)] = unacked
        assert broker.hexists("unacked", tag)
        wait_for(
            lambda: time.time() - delivered_at > visibility + 0.5,
            visibility + 10,
            "the visibility timeout to pass",
        )
        second = Worker(env, logdir=tmp_path, include="tests.support.tasks", concurrency=1)
        with started(second):
            envelope = result.get(timeout=TIMEOUT)
            assert result.state == "SUCCESS"
            wait_for(lambda: broker.zcard("unacked_index") == 0, 10, "the ack")
    labels = _labels(results, key)
    assert len([x for x in labels if x.startswith("start:")]) == 2
    assert labels[-1] == f"done:{envelope['data']['pid']}"
    assert broker.hlen("unacked") == 0
    _no_secret(first.log(), second.log())


def _hold_unacked(
    env: dict[str, str], tmp_path: Path, node: str, key: str, count: int, queue: str = "crawl"
) -> list[str]:
    """*count* slow tasks taken by worker *node*, which is then killed (kill -9 of the
    whole process group): they stay unacknowledged, recorded under *node*."""
    results = redis.Redis.from_url(env["PIXCRAWLER_CELERY_RESULT_BACKEND"])
    worker = Worker(
        env,
        queues=queue,
        logdir=tmp_path,
        include="tests.support.tasks",
        pool="threads",
        concurrency=count,
        name=node,
    )
    with client_app(env) as app, started(worker):
        ids = [app.send_task(SLEEP_TASK, args=[key, 4], queue=queue).id for _ in range(count)]
        wait_for(lambda: len(_labels(results, key)) == count, 30, f"{count} tasks to start")
        worker.kill()
    _no_secret(worker.log())
    return ids


def _own_dbs_env(redis_server: RedisServer, storage: Path) -> dict[str, str]:
    return settings_env(
        redis_server, storage, broker_url=redis_server.url(14), result_backend=redis_server.url(15)
    )


SUPPORT = "tests.support.tasks"


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pixcrawler.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_restarted_worker_requeues_what_its_killed_predecessor_held(
    redis_server: RedisServer, storage_dir: Path, tmp_path: Path
) -> None:
    """kill -9 of whole workers with tasks in flight, VISIBILITY_TIMEOUT an hour: the
    replacement of the same node name (what systemd starts) runs its predecessor's tasks
    at once; another node's stay put until the operator requeues them by name."""
    env = _own_dbs_env(redis_server, storage_dir)
    assert env["PIXCRAWLER_CELERY_BROKER_URL"].endswith("/14")
    broker, results = redis_server.client(14), redis_server.client(15)
    crawl_node, gone_node = f"crawl@restart-{uuid.uuid4().hex[:6]}", f"gone@{uuid.uuid4().hex[:6]}"
    crawl_key, gone_key = f"held:{uuid.uuid4().hex}", f"gone:{uuid.uuid4().hex}"
    crawl_ids = _hold_unacked(env, tmp_path, crawl_node, crawl_key, 5)
    gone_ids = _hold_unacked(env, tmp_path, gone_node, gone_key, 3, queue="validation")
    assert unacked_owners(broker) == {crawl_node: 5, gone_node: 3}
    assert broker.hlen("unacked") == 8

    replacement = Worker(
        env, queues="crawl", logdir=tmp_path, include="tests.support.tasks", pool="threads",
        concurrency=5, name=crawl_node,
    )  # fmt: skip
    with client_app(env) as app, started(replacement):
        restarted = time.monotonic()
        for task_id in crawl_ids:
            assert app.AsyncResult(task_id).get(timeout=TIMEOUT)["status"] == "success"
        took = time.monotonic() - restarted
        # 4 s tasks, run once more: nowhere near the hour of VISIBILITY_TIMEOUT.
        assert took < 60, took
        wait_for(lambda: unacked_owners(broker) == {gone_node: 3}, 10, "the acks")
        # The other node's deliveries were not touched...
        assert len(_labels(results, gone_key)) == 3
        assert {app.AsyncResult(i).state for i in gone_ids} == {"PENDING"}

        # ...until the operator says that node is gone. A live node is refused.
        alive = _cli(env, "broker", "requeue", crawl_node)
        assert alive.returncode == 1
        assert "refused" in alive.stderr
        listed = _cli(env, "broker", "unacked", "--json")
        assert json.loads(listed.stdout) == {gone_node: 3}
        done = _cli(env, "broker", "requeue", gone_node)
        assert done.returncode == 0, done.stderr
        assert "requeued 3" in done.stdout
        taker = Worker(env, queues="validation", logdir=tmp_path, include="tests.support.tasks")
        with started(taker):
            for task_id in gone_ids:
                assert app.AsyncResult(task_id).get(timeout=TIMEOUT)["status"] == "success"
    assert broker.hlen(UNACKED_OWNER_KEY) == 0
    assert broker.hlen("unacked") == 0
    # Each held task ran twice: started before the kill, then to the end once.
    assert _labels(results, crawl_key).count("done:" + str(replacement.proc.pid)) == 5  # type: ignore[union-attr]
    _no_secret(replacement.log(), alive.stdout, alive.stderr, done.stdout, done.stderr)


def _after(commands: list[str], first: str, then: str) -> bool:
    names = [c.split(" ")[0] for c in commands]
    return first in names and then in names[names.index(first) :]


def test_owner_record_is_written_and_removed_with_kombus_own(
    redis_server: RedisServer, storage_dir: Path, tmp_path: Path
) -> None:
    """The owner record rides in kombu's MULTI/EXEC on delivery and on ack, so no crash
    between two commands can leave a delivery without its owner or an owner without it."""
    env = _own_dbs_env(redis_server, storage_dir)
    node = f"monitor@{uuid.uuid4().hex[:6]}"
    worker = Worker(env, queues="default", logdir=tmp_path, include=SUPPORT, name=node)
    commands: list[str] = []
    with client_app(env) as app, started(worker), redis_server.client(14).monitor() as monitor:  # type: ignore[no-untyped-call]
        result = app.send_task(RECORD_TASKS["default"], args=[f"tx:{node}", "x"])
        result.get(timeout=TIMEOUT)
        # Until the ack's EXEC has gone by; pytest-timeout bounds the wait.
        while not _after(commands, "ZREM", "EXEC"):
            event = monitor.next_command()
            if event["db"] == 14:
                commands.append(event["command"])
    ops = [c.split(" ")[0] for c in commands if "unacked" in c or c.startswith(("MULTI", "EXEC"))]
    # Delivery: MULTI, ZADD unacked_index, HSET unacked, HSET unacked_owner, EXEC.
    delivery = ops.index("ZADD")
    assert ops[delivery - 1 : delivery + 4] == ["MULTI", "ZADD", "HSET", "HSET", "EXEC"], commands
    assert UNACKED_OWNER_KEY in commands[[c.split(" ")[0] for c in commands].index("ZADD") + 2]
    # Ack: MULTI, ZREM, HDEL unacked, HDEL unacked_owner, EXEC.
    ack = ops.index("ZREM")
    assert ops[ack - 1 : ack + 4] == ["MULTI", "ZREM", "HDEL", "HDEL", "EXEC"], commands


def test_tasks_prefetched_before_a_lost_connection_run_after_it(
    storage_dir: Path, tmp_path: Path
) -> None:
    """Redis goes away under a worker holding prefetched tasks. Celery forgets them on the
    reconnect, and they stayed in kombu's unacked hash (Redis was not there to take them
    back): the worker's new channel requeues them, sparing the task still running."""
    own = RedisServer(tmp_path / "redis", REDIS_PASSWORD, shipped=True)
    own.start()
    try:
        env = settings_env(own, storage_dir, worker_prefetch_multiplier="6")
        key = f"reconnect:{uuid.uuid4().hex}"
        worker = Worker(
            env, queues="crawl", logdir=tmp_path, include=SUPPORT, pool="threads",
            concurrency=1, name=f"crawl@reconnect-{uuid.uuid4().hex[:6]}",
        )  # fmt: skip
        with client_app(env) as app, started(worker):
            running = app.send_task(SLEEP_TASK, args=[key, 15])  # outlives the outage
            wait_for(lambda: _labels(own.client(1), key)[:1] != [], 30, "the slow task to start")
            queued = [app.send_task(RECORD_TASKS["crawl"], args=[key, f"r{i}"]) for i in range(5)]
            # The worker prefetches them (threads -c 1, prefetch 6) while the first runs.
            wait_for(lambda: own.client(0).hlen("unacked") == 6, 30, "the prefetch")
            own.stop()
            wait_for(lambda: "Connection to broker lost" in worker.log(), 30, "the lost link")
            time.sleep(8)  # long enough for every reconnect attempt to fail once
            own.start()
            for result in [running, *queued]:
                assert result.get(timeout=TIMEOUT)["status"] == "success"
            wait_for(lambda: own.client(0).hlen("unacked") == 0, 20, "the acks")
            assert own.client(0).hlen(UNACKED_OWNER_KEY) == 0
            assert worker.alive
        labels = _labels(own.client(1), key)
        assert sorted(x for x in labels if x.startswith("r")) == [f"r{i}" for i in range(5)]
        assert len([x for x in labels if x.startswith("done:")]) == 1  # ran once, to the end
        _no_secret(worker.log())
    finally:
        own.stop()


def test_redis_restart_keeps_queued_and_held_tasks_with_the_shipped_acl(
    storage_dir: Path, tmp_path: Path
) -> None:
    """The pixcrawler_redis role's own redis.conf and users.acl (rendered from its
    templates): a restart replays the AOF, MULTI/EXEC blocks included, refusing nothing.
    With the default user at -@all (the old ACL file) the replay refused every
    transaction and dropped kombu's unacked bookkeeping."""
    own = RedisServer(tmp_path / "redis", REDIS_PASSWORD, shipped=True)
    own.start()
    try:
        env = settings_env(own, storage_dir)
        key = f"aof:{uuid.uuid4().hex}"
        node = f"crawl@aof-{uuid.uuid4().hex[:6]}"
        held = _hold_unacked(env, tmp_path, node, f"{key}:held", 4)
        count = 100
        labels = [f"task-{i}" for i in range(count)]
        queues = ["crawl", "validation", "default", "maintenance"]
        with client_app(env) as app:
            ids = [
                app.send_task(RECORD_TASKS[queues[i % 4]], args=[key, label]).id
                for i, label in enumerate(labels)
            ]
        broker = own.client(0)
        queued = sum(broker.llen(k) for k in broker.scan_iter() if broker.type(k) == b"list")
        assert queued == count
        assert unacked_owners(broker) == {node: 4}
        pid_before = own.proc.pid if own.proc else None
        own.restart()
        assert own.proc is not None
        assert own.proc.pid != pid_before
        log = own.log.read_text()
        assert "NOPERM" not in log
        assert "CRITICAL" not in log
        # The bookkeeping came back whole, in the right database.
        assert broker.hlen("unacked") == 4
        assert unacked_owners(broker) == {node: 4}
        # On Redis 8.0 a refused block's SELECT sent later writes to the result database.
        strays = [k for k in own.client(1).scan_iter() if k.decode().split(SEP)[0] in queues]
        assert not strays
        worker = Worker(
            env, logdir=tmp_path, include="tests.support.tasks", pool="threads", concurrency=8,
            name=node,
        )  # fmt: skip
        with started(worker):
            with client_app(env) as app:
                for task_id in [*ids, *held]:
                    assert app.AsyncResult(task_id).get(timeout=TIMEOUT)["status"] == "success"
            assert sorted(_labels(own.client(1), key)) == sorted(labels)

            # The seed's reconnection drill: Redis goes away under a running worker and
            # comes back; the worker reconnects and consumes new work.
            own.restart()
            wait_for(lambda: "Connection to broker lost" in worker.log(), 30, "the lost link")
            with client_app(env) as app:
                later = app.send_task(RECORD_TASKS["crawl"], args=[key, "after-restart"])
                assert later.get(timeout=TIMEOUT)["status"] == "success"
            assert worker.alive
        assert _labels(own.client(1), key)[-1] == "after-restart"
        assert "NOPERM" not in own.log.read_text()
        _no_secret(worker.log())
    finally:
        own.stop()


def test_crawl_work_is_served_before_maintenance(
    redis_server: RedisServer, storage_dir: Path, tmp_path: Path
) -> None:
    env = settings_env(
        redis_server,
        storage_dir,
        broker_url=redis_server.url(12),
        result_backend=redis_server.url(13),
        worker_prefetch_multiplier="1",
    )
    broker, results = redis_server.client(12), redis_server.client(13)
    key = f"order:{uuid.uuid4().hex}"
    per_queue = 6
    # The backlog is published lowest priority first, so FIFO order would be wrong.
    order = ["maintenance", "default", "validation", "crawl"]
    with client_app(env) as app:
        for queue in order:
            for i in range(per_queue):
                app.send_task(RECORD_TASKS[queue], args=[key, f"{queue}-{i}"])
        # A crawl task sent to maintenance by hand takes maintenance's bucket.
        app.send_task(RECORD_TASKS["crawl"], args=[key, "maintenance-byhand"], queue="maintenance")

        # Each queue's messages sit in its Redis priority bucket (0 = served first).
        for queue in order:
            bucket = queue_spec(queue).redis_priority
            assert bucket in PRIORITY_STEPS
            list_key = queue if bucket == 0 else f"{queue}{SEP}{bucket}"
            expected = per_queue + (queue == "maintenance")
            assert broker.llen(list_key) == expected, list_key

        # One process, one message at a time, queues listed maintenance FIRST: any order
        # that came from the command line or from publishing order would show here.
        worker = Worker(
            env,
            queues="maintenance,default,validation,crawl",
            logdir=tmp_path,
            include="tests.support.tasks",
            concurrency=1,
        )
        total = 4 * per_queue + 1
        with started(worker):
            wait_for(lambda: results.llen(key) == total, TIMEOUT, "the backlog to drain")
    ran = [label.rsplit("-", 1)[0] for label in _labels(results, key)]
    assert sorted(ran) == sorted([q for q in order for _ in range(per_queue)] + ["maintenance"])
    # With prefetch 1 the worker holds at most one reserved message, and kombu never
    # reorders what it has reserved: a message taken before the crawl backlog existed
    # could run first. Here the whole backlog exists before the worker starts, so the
    # first BRPOP already sees crawl work; the tolerance is the prefetch count.
    prefetch = 1
    first_crawl = ran.index("crawl")
    assert first_crawl <= prefetch, ran
    rank = {"crawl": 0, "validation": 1, "default": 1, "maintenance": 2}
    ranks = [rank[queue] for queue in ran[first_crawl:]]
    assert ranks == sorted(ranks), ran
    _no_secret(worker.log())
