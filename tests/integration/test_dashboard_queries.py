"""Every query of the Grafana dashboard answers, asked of a real Prometheus.

tests/unit/test_dashboard.py proves the queries parse and name the exporter's metrics and
labels; this proves they return something: a join on a label the two sides do not share,
or a filter on a label value the exporter never writes, parses fine and shows an empty
panel. Debian's Prometheus (the binary beside promtool) scrapes the real exporter while
a real worker runs tasks that succeed, fail with a code and retry, and one task waits on
a queue nobody consumes. Then every query whose metrics this setup has is asked through
Prometheus's HTTP API and must return at least one series; the queries left out are those
of parts not running here (the Redis and node exporters, Sentinels, alert rules), named
in the failure message.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pixcrawler.celery_core.config import load_settings
from pixcrawler.celery_core.queues import QUEUE_NAMES
from pixcrawler.exporter.server import start
from tests.support import images
from tests.support.dashboard import concrete, load, queries, variables
from tests.support.harness import (
    RedisServer,
    Worker,
    client_app,
    free_port,
    running,
    settings_env,
    wait_for,
)
from tests.support.http_fixtures import LoopbackHTTPServer, Route
from tests.support.tasks import RECORD_TASKS

PASSWORD = "dashboard-test-" + "d" * 16
#: Seconds between scrapes; Grafana's $__rate_interval is at least four of them.
SCRAPE_INTERVAL = 1
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: its identifiers that are no function,
    keyword, label or duration."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\[[^\]]*\]|\{[^}]*\}", "", text)  # ranges, label matchers
    text = _LABEL_LIST.sub("", text)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)\b(?!\s*\()", text)
    return {name for name in names if name.lower() not in _KEYWORDS}


def test_metric_names_takes_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.5, sum by (le, queue) (rate(a_bucket{queue=~"x|y"}[1m])))'
        ' / on (queue) group_left b_total and c > 0 or ALERTS{alertstate="firing"}'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "ALERTS"}


class Prometheus:
    """``prometheus`` scraping the exporter alone (job ``pixcrawler``, as the role names it)."""

    def __init__(self, workdir: Path, exporter_port: int) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip(
                "prometheus is not installed (Debian package prometheus; scripts/bootstrap)"
            )
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s"},
                    "scrape_configs": [
                        {
                            "job_name": "pixcrawler",
                            "static_configs": [
                                {
                                    "targets": [f"127.0.0.1:{exporter_port}"],
                                    "labels": {"instance": "monitor"},
                                }
                            ],
                        }
                    ],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        self.args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[Prometheus]:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for(self._ready, 30, f"prometheus to start ({self.log})", interval=0.2)
                yield self
            finally:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)

    def _ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]

    def series(self, query: str) -> list[Any]:
        return list(self.get("query", query=query)["result"])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own: no other test's tasks or events in its counts."""
    server = RedisServer(tmp_path / "redis", PASSWORD)
    server.start()
    # Every env sets a limit (env/*.yml, pixcrawler_redis_maxmemory); with none (0) the
    # memory ratio has, rightly, no value.
    server.client().config_set("maxmemory", "256mb")
    yield server
    server.stop()


def test_every_query_answers(
    broker: RedisServer, http_server: LoopbackHTTPServer, tmp_path: Path
) -> None:
    env = settings_env(broker, tmp_path / "images")
    flaky = http_server.add(Route(statuses=[503, 200], body=images.png("dashboard")), "dash")
    worker = Worker(
        env,
        queues="crawl",
        logdir=tmp_path,
        include="tests.support.tasks",
        pool="threads",
        concurrency=2,
        name="crawl@dashboard-test",
    )
    exporter = start(load_settings(env), port=0)
    try:
        wait_for(exporter.follower.connected.is_set, 15, "the event subscription")
        prometheus = Prometheus(tmp_path, exporter.port)
        with prometheus.running(), running(worker), client_app(env) as app:
            done = [app.send_task(RECORD_TASKS["crawl"], args=["dash", str(i)]) for i in range(3)]
            retried = app.send_task("builder.tasks.crawl_task", args=[flaky])
            failed = app.send_task("builder.tasks.crawl_task", args=[123])
            # validation has no consumer here: it keeps a backlog (in a priority list).
            app.send_task(RECORD_TASKS["validation"], args=["dash", "v"], priority=6)
            for result in [*done, retried]:
                assert result.get(timeout=60)["status"] == "success"
            assert retried.get(timeout=1)["retries"] == 1
            failed.get(timeout=60, propagate=False)
            assert failed.state == "FAILURE"

            # Two scrapes of every outcome, so that rate() over them has a value.
            def scraped_twice() -> bool:
                return all(
                    prometheus.series(f"count_over_time({selector}[1m]) >= 2")
                    for selector in (
                        'pixcrawler_task_outcomes_total{outcome="retried"}',
                        'pixcrawler_task_outcomes_total{outcome="failed"}',
                        "pixcrawler_task_runtime_seconds_count",
                    )
                )

            wait_for(scraped_twice, 30, "Prometheus to scrape the outcomes twice", interval=0.5)
            dashboard = load()
            defined = variables(dashboard)
            queues = prometheus.get("label/queue/values", **{"match[]": "pixcrawler_queue_backlog"})
            assert sorted(queues) == sorted(QUEUE_NAMES)
            # "All" of a multi-value variable: Grafana joins the values into a regex.
            values = {"queue": "|".join(queues)}
            present: dict[str, bool] = {}
            empty, left_out, asked = [], [], 0
            for where, expr in queries(dashboard):
                query = concrete(expr, defined, values)
                for name in metric_names(query) - present.keys():
                    present[name] = bool(prometheus.series(f"group({name})"))
                absent = sorted(n for n in metric_names(query) if not present[n])
                if absent:
                    left_out.append(f"{where}: no {', '.join(absent)} here")
                    continue
                asked += 1
                if not prometheus.series(query):
                    empty.append(f"{where}: {query}")
    finally:
        exporter.stop()
    assert empty == [], "queries that answer nothing:\n" + "\n".join(empty)
    # Most of the dashboard is the exporter's: the queries left out are the other parts'.
    assert asked >= 20, "\n".join(left_out)
    missing = {name for name, there in present.items() if not there and "pixcrawler_" in name}
    assert {name for name in missing if "_sentinel_" not in name} == set(), "\n".join(left_out)
