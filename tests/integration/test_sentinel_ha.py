"""A highly available broker: a master, two replicas and three Sentinels, all real, on
loopback (tests/support/sentinels.py), the Redis nodes with the role's shipped config
and ACLs, the Sentinels with ACL users and every client logging in as the Sentinels'
minimal client user.

What is proved: the verification's ``sentinel`` check reports the set as it is (the
master, after a failover the new one, and a lost quorum as a FAIL); a worker keeps
consuming across a failover and loses no task; Flower's queue lengths still come
through when the first Sentinel of the URL is down; and none of that needs more than
the client user's rules (the Sentinels' ACL LOG stays empty).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flower.utils import broker as flower_broker

from pixcrawler import flower_broker as ours
from pixcrawler.celery_core.config import load_settings
from tests.support.harness import Worker, client_app, free_port, running, wait_for
from tests.support.paths import REPO
from tests.support.sentinels import SentinelSet
from tests.support.tasks import RECORD_TASKS
from tests.support.verify_cli import checks_of, explain, run_script, write_env_file

PASSWORD = "sentinel-ha-" + "p" * 16


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    sentinels = SentinelSet(tmp_path_factory.mktemp("sentinel-ha"), PASSWORD)
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.stop()


@pytest.fixture(autouse=True)
def no_acl_refusal(ha: SentinelSet) -> Iterator[None]:
    """Every client path of every test ran within the Sentinels' client user's rules."""
    ha.reset_acl_log()
    yield
    refused = [(e.get("username"), e.get("reason"), e.get("object")) for e in ha.acl_log()]
    assert refused == [], f"the Sentinels refused: {refused}"


def sentinel_check(ha: SentinelSet, tmp_path: Path, broker_db: int = 2) -> dict[str, Any]:
    """The verification script's ``sentinel`` check, run as an operator runs it."""
    env_file = write_env_file(tmp_path / "ha.env", ha.env(tmp_path / "images", broker_db))
    proc = run_script("--env-file", str(env_file), "--json", "--timeout", "20")
    for secret in (PASSWORD, ha.client_password, ha.acl.admin_password):
        assert secret not in proc.stdout + proc.stderr
    check: dict[str, Any] = checks_of(proc)["sentinel"]
    check["explain"] = explain(proc)
    return check


def test_the_check_reports_master_replicas_and_quorum(ha: SentinelSet, tmp_path: Path) -> None:
    master = ha.master_port()
    ha.wait_settled(master)

    check = sentinel_check(ha, tmp_path)

    assert check["status"] == "PASS", check["explain"]
    detail = check["detail"]
    assert detail.startswith(f"master 127.0.0.1:{master}, 2 replicas ("), detail
    for node in ha.nodes:
        if node.port != master:
            assert f"127.0.0.1:{node.port} lag " in detail, detail
    assert "3 Sentinels, quorum 2 reachable" in detail
    assert "unreachable" not in detail


def test_after_a_failover_the_check_reports_the_new_master(ha: SentinelSet, tmp_path: Path) -> None:
    old = ha.master_port()
    ha.wait_settled(old)

    new = ha.failover()

    check = sentinel_check(ha, tmp_path)
    assert new != old
    assert check["status"] == "PASS", check["explain"]
    assert check["detail"].startswith(f"master 127.0.0.1:{new}, 2 replicas"), check["detail"]


def test_without_a_quorum_the_check_fails_and_says_why(ha: SentinelSet, tmp_path: Path) -> None:
    master = ha.master_port()
    ha.wait_settled(master)
    first, second, third = ha.sentinels

    with ha.stopped(first, second):
        # The survivor counts a Sentinel out once it has been silent for down-after.
        wait_for(lambda: not _ckquorum_ok(ha, third), 15, "the survivor to see no quorum")
        check = sentinel_check(ha, tmp_path)

    assert check["status"] == "FAIL", check["explain"]
    detail = check["detail"]
    assert detail.startswith(
        f"no quorum: the Sentinels could not fail over master 127.0.0.1:{master}"
    )
    assert f"127.0.0.1:{third.port}: NOQUORUM" in detail
    for gone in (first, second):
        assert f"127.0.0.1:{gone.port} (cannot connect" in detail
    ha.wait_settled(master)


def _ckquorum_ok(ha: SentinelSet, sentinel: Any) -> bool:
    client = sentinel.admin_client()
    try:
        client.execute_command("SENTINEL", "CKQUORUM", ha.master_name)
        return True
    except Exception:
        return False
    finally:
        client.close()


def test_a_worker_keeps_consuming_across_a_failover(ha: SentinelSet, tmp_path: Path) -> None:
    master = ha.master_port()
    ha.wait_settled(master)
    env = ha.env(tmp_path / "images", broker_db=4)
    key = f"ha-failover:{time.monotonic_ns()}"
    worker = Worker(
        env,
        queues="crawl",
        logdir=tmp_path,
        include="tests.support.tasks",
        pool="threads",
        concurrency=2,
    )
    with client_app(env) as app, running(worker):
        before = [
            app.send_task(RECORD_TASKS["crawl"], args=[key, f"before-{i}"], queue="crawl")
            for i in range(5)
        ]
        for result in before:
            assert result.get(timeout=30)["status"] == "success"

        new = ha.failover()
        # Until the Sentinels turn the old master into a replica (their next INFO of
        # it, up to 10 s), it still accepts writes from connections opened before the
        # failover, and those writes are dropped when it resyncs from the new master:
        # a forced failover loses what is written in that window (see the README's
        # Sentinel notes). Sent once it has become a replica, every task must get
        # through: the worker's blocked BRPOP is cut off by the demotion and it must
        # find the new master through the Sentinels.
        ha.wait_settled(new)
        after = [
            app.send_task(RECORD_TASKS["crawl"], args=[key, f"after-{i}"], queue="crawl")
            for i in range(5)
        ]
        for result in after:
            assert result.get(timeout=60)["status"] == "success"

        labels = sorted(ha.node(new).client(5).lrange(key, 0, -1))
        log = worker.log()
    assert new != master
    expected = sorted(f"{when}-{i}".encode() for when in ("before", "after") for i in range(5))
    assert labels == expected  # every task ran once, and its record is on the new master
    for secret in (PASSWORD, ha.client_password):
        assert secret not in log


def test_flower_queue_lengths_come_through_with_the_first_sentinel_down(
    ha: SentinelSet, tmp_path: Path
) -> None:
    """A real Flower process as the unit starts it, asked over its API, and Flower's
    broker code path called directly: its own class fails where ours answers."""
    master = ha.master_port()
    ha.wait_settled(master)
    env = ha.env(tmp_path / "images", broker_db=6)
    with client_app(env) as app:
        for _ in range(3):
            app.send_task(RECORD_TASKS["maintenance"], args=["unused", "x"], queue="maintenance")
        with app.connection() as conn:  # exactly what Flower hands its broker view
            flower_url = conn.as_uri(include_password=True)
        options = dict(app.conf.broker_transport_options)

    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pixcrawler.celery_core.app", "flower",
         f"--port={port}", "--address=127.0.0.1"],
        env={**env, "FLOWER_BASIC_AUTH": "ops:flower-test-pw"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _flower_up(port), 30, "Flower to answer")
        with ha.stopped(ha.sentinels[0]):
            lengths = _queue_lengths(port)
            mine = ours.broker(flower_url, broker_options=options, broker_use_ssl=None)
            direct = asyncio.run(mine.queues(["maintenance"]))
            theirs = flower_broker.RedisSentinel(
                ours.real_url(flower_url), broker_options=options, broker_use_ssl=None
            )
            with pytest.raises(Exception, match=r"(?i)connect|refused"):
                asyncio.run(theirs.queues(["maintenance"]))
    finally:
        flower.terminate()
        try:
            flower.wait(timeout=15)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait()

    assert lengths["maintenance"] == 3
    assert direct == [{"name": "maintenance", "messages": 3}]


def _flower_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _queue_lengths(port: int) -> dict[str, int]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/queues/length",
        headers={"Authorization": "Basic " + base64.b64encode(b"ops:flower-test-pw").decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    return {q["name"]: int(q["messages"]) for q in body["active_queues"]}


def test_the_sentinel_settings_load(ha: SentinelSet, tmp_path: Path) -> None:
    """The env the role will write (sentinel://...;...;..., SENTINEL_USERNAME) is valid."""
    settings = load_settings(ha.env(tmp_path, broker_db=2))
    assert settings.sentinel_username == "pixcrawler"
