"""The exporter's pure parts: the publish stamp, event decoding, codes, liveness by name.

What needs Redis or a worker is in tests/integration/test_exporter.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from prometheus_client import CollectorRegistry

from pixcrawler.celery_core.stamps import PUBLISHED_AT_HEADER, published_at, stamp_publish_time
from pixcrawler.cli import build_parser
from pixcrawler.exporter.events import EventState, decode, error_code
from pixcrawler.exporter.queues import priority_lists
from tests.support.paths import REPO


def test_the_stamp_is_added_once_and_read_back() -> None:
    headers: dict[str, object] = {"task": "x"}
    stamp_publish_time(headers=headers)
    first = headers[PUBLISHED_AT_HEADER]
    stamp_publish_time(headers=headers)
    assert headers[PUBLISHED_AT_HEADER] == first
    raw = json.dumps({"body": "", "headers": headers, "properties": {}})
    assert published_at(raw) == first
    for unreadable in ("not json", json.dumps({"headers": {}}), json.dumps([1, 2])):
        assert published_at(unreadable) is None
    assert published_at(json.dumps({"headers": {PUBLISHED_AT_HEADER: True}})) is None


def test_every_publisher_of_the_app_stamps() -> None:
    """Importing the app alone (a worker, beat, a caller) connects the signal handler."""
    code = (
        "from celery import signals\n"
        "import pixcrawler.celery_core.app\n"
        "names = [getattr(r(), '__name__', '') for _, r in signals.before_task_publish.receivers]\n"
        "print('stamp_publish_time' in names)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "True", out.stderr


def test_priority_lists_are_kombus_names() -> None:
    assert priority_lists("crawl") == [
        "crawl",
        "crawl\x06\x163",
        "crawl\x06\x166",
        "crawl\x06\x169",
    ]


def _envelope(body: object) -> bytes:
    encoded = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps({"body": encoded, "properties": {"body_encoding": "base64"}}).encode()


def test_decode_single_and_batched_events() -> None:
    assert decode(_envelope({"type": "worker-heartbeat"})) == [{"type": "worker-heartbeat"}]
    batch = [{"type": "task-succeeded"}, {"type": "task-failed"}, "junk"]
    assert [e["type"] for e in decode(_envelope(batch))] == ["task-succeeded", "task-failed"]


def test_error_code_takes_the_code_never_the_message() -> None:
    assert error_code("TaskError('invalid_payload', 'TypeError: x', {})") == "invalid_payload"
    assert error_code("InvalidPayload('not_an_image', 'http://u:secret@h/')") == "not_an_image"
    assert error_code("RuntimeError('bug with secret')") == "unknown"
    assert error_code("TaskError('Has Spaces and CAPS', '')") == "unknown"
    assert error_code(None) == "unknown"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_consumers_by_node_name_expire_with_heartbeats() -> None:
    clock = Clock()
    state = EventState(CollectorRegistry(), clock=clock)
    for node in ("crawl@w1", "crawl@w2", "validation@w1", "w9@adhoc"):
        state.handle({"type": "worker-heartbeat", "hostname": node, "freq": 2.0})
    assert state.consumers() == {"crawl": 2, "validation": 1, "default": 0, "maintenance": 0}
    assert len(state.alive_nodes()) == 4
    state.handle({"type": "worker-offline", "hostname": "crawl@w2"})
    assert state.consumers()["crawl"] == 1
    clock.now += 3.9
    assert state.consumers()["crawl"] == 1
    clock.now += 0.2  # past twice the heartbeat interval: gone
    assert state.consumers()["crawl"] == 0
    assert state.alive_nodes() == []


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_outcomes_get_the_task_name_and_queue_from_earlier_events() -> None:
    registry = CollectorRegistry()
    state = EventState(registry)
    state.handle({"type": "task-sent", "uuid": "a", "name": "builder.tasks.crawl_task"})
    state.handle({"type": "task-succeeded", "uuid": "a", "runtime": 0.5})
    state.handle(
        {
            "type": "task-sent",
            "uuid": "b",
            "name": "validator.tasks.validate_task",
            "queue": "default",
        }
    )
    state.handle(
        {"type": "task-retried", "uuid": "b", "exception": "TransientError('transient', '')"}
    )
    state.handle({"type": "task-failed", "uuid": "b", "exception": "TaskError('too_large', '')"})
    state.handle({"type": "task-failed", "uuid": "never-seen", "exception": "boom"})
    crawl = {"queue": "crawl", "task": "builder.tasks.crawl_task"}
    validate = {"queue": "default", "task": "validator.tasks.validate_task"}
    total = "pixcrawler_task_outcomes_total"
    assert _sample(registry, total, **crawl, outcome="succeeded", code="") == 1
    assert _sample(registry, "pixcrawler_task_runtime_seconds_count", **crawl) == 1
    assert _sample(registry, total, **validate, outcome="retried", code="transient") == 1
    assert _sample(registry, total, **validate, outcome="failed", code="too_large") == 1
    unknown = {"queue": "unknown", "task": "unknown"}
    assert _sample(registry, total, **unknown, outcome="failed", code="unknown") == 1


def test_task_names_from_events_cannot_explode_the_labels() -> None:
    registry = CollectorRegistry()
    state = EventState(registry)
    for i in range(250):
        state.handle({"type": "task-received", "uuid": str(i), "name": f"t.n{i}"})
        state.handle({"type": "task-succeeded", "uuid": str(i)})
    state.handle({"type": "task-received", "uuid": "x", "name": "has spaces {and braces}"})
    state.handle({"type": "task-succeeded", "uuid": "x"})
    other = _sample(
        registry, "pixcrawler_task_outcomes_total",
        queue="default", task="other", outcome="succeeded", code="",
    )  # fmt: skip
    assert other == 51


def test_the_cli_has_the_exporter_command() -> None:
    args = build_parser().parse_args(["exporter", "--env-file", "/x.env"])
    assert args.env_file == "/x.env"
    assert args.handler.__name__ == "run_exporter"
