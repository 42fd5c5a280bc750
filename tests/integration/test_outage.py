"""A broker outage in the middle of crawl→validate chains: what finished stays finished.

The crawls are in flight (a slow loopback server) when Redis stops; they end while it is
down, so the chain's next step, the results and the acks all have to wait for Redis. The
outage is shorter than the outage tolerance, so every chain must end in SUCCESS once
Redis is back, and the workers must still be alive and consuming.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import chain

from tests.support import images
from tests.support.harness import RedisServer, Worker, client_app, running, settings_env, wait_for
from tests.support.http_fixtures import LoopbackHTTPServer, Route

CHAINS = 6
#: The crawls take this long, so they end while Redis is down.
DOWNLOAD_SECONDS = 3.0
#: Longer than Celery's own publish retries (about a second) and its result-write retries,
#: shorter than BROKER_OUTAGE_TOLERANCE (60 s by default). PXC_OUTAGE overrides it.
OUTAGE_SECONDS = float(os.environ.get("PXC_OUTAGE", "20"))


def test_chains_in_flight_survive_a_broker_outage(
    tmp_path: Path, http_server: LoopbackHTTPServer
) -> None:
    redis_server = RedisServer(tmp_path / "redis", "outage-" + "x" * 20, shipped=True)
    redis_server.start()
    # Every crawl in flight at once, as the test requires: the site may have them all.
    env = settings_env(
        redis_server,
        tmp_path / "images",
        worker_concurrency=str(CHAINS),
        crawl_site_max_in_flight=str(CHAINS),
    )
    urls = [
        http_server.add(
            Route(body=images.png(f"outage-{i}", (64, 48)), delay=DOWNLOAD_SECONDS), "outage"
        )
        for i in range(CHAINS)
    ]
    crawler = Worker(env, queues="crawl", logdir=tmp_path, pool="threads", concurrency=CHAINS)
    validator = Worker(env, queues="validation", logdir=tmp_path, concurrency=2)
    try:
        with running(crawler), running(validator), client_app(env) as app:
            crawl = app.signature("builder.tasks.crawl_task")
            validate = app.signature("validator.tasks.validate_task")
            results = [chain(crawl.clone((url,)), validate.clone()).apply_async() for url in urls]
            wait_for(lambda: all(http_server.hits(u) for u in urls), 30, "every crawl to start")
            redis_server.stop()
            time.sleep(OUTAGE_SECONDS)
            redis_server.start()
            outcomes = []
            for result in results:
                try:
                    value = result.get(timeout=90, propagate=False)
                except Exception as exc:  # a timeout says more in the assertion below
                    value = exc
                outcomes.append((result.state, value))
            failed = [(state, value) for state, value in outcomes if state != "SUCCESS"]
            assert not failed, f"{len(failed)} of {CHAINS} chains did not succeed: {failed}"
            for _, value in outcomes:
                assert isinstance(value, dict)
                assert value["status"] == "success", value
            # Once each: no crawl was handed to a second thread, no validation repeated.
            fetched = [http_server.hits(u) for u in urls]
            assert fetched == [1] * CHAINS, f"downloads per URL: {fetched}"
            logs = crawler.log() + validator.log()
            for name in ("builder.tasks.crawl_task", "validator.tasks.validate_task"):
                runs = logs.count(f"event=task_succeeded task={name}")
                assert runs == CHAINS, f"{name} succeeded {runs} times for {CHAINS} chains"
            assert crawler.alive, crawler.log()[-3000:]
            assert validator.alive, validator.log()[-3000:]
            for sign in ("Traceback", "Couldn't ack", "CPendingDeprecationWarning"):
                assert sign not in logs, f"{sign!r} in the worker logs:\n{logs[-4000:]}"
    finally:
        redis_server.stop()
