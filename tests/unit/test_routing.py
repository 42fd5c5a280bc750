"""Routing through the real app's router, checked against the seed's contract.

The expected queue is computed here from the seed's own words, not from
``queues.queue_for_task``, so a wrong table in the package cannot agree with itself.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
from celery import Celery

import tests.support.tasks
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.queues import QUEUES

# The seed: "crawl (Priority 9) builder.tasks.*; validation (5) validator.tasks.*;
# maintenance (1) celery_core.cleanup_*; default (5) everything else".
SEED_ROUTES = (
    ("builder.tasks.*", "crawl"),
    ("validator.tasks.*", "validation"),
    ("celery_core.cleanup_*", "maintenance"),
)
SEED_PRIORITY = {"crawl": 9, "validation": 5, "default": 5, "maintenance": 1}


def seed_queue(name: str) -> str:
    for pattern, queue in SEED_ROUTES:
        if fnmatchcase(name, pattern):
            return queue
    return "default"


@pytest.fixture(scope="module")
def app() -> Celery:
    app = get_celery_app()
    app.loader.import_default_modules()
    assert tests.support.tasks.RECORD_TASKS  # registered on the same app
    return app


def _route(app: Celery, name: str, **options: Any) -> dict[str, Any]:
    return dict(app.amqp.router.route(options, name))


def _own_tasks(app: Celery) -> list[str]:
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def test_the_real_tasks_are_registered(app: Celery) -> None:
    assert {
        "builder.tasks.crawl_task",
        "validator.tasks.validate_task",
        "celery_core.health_check",
        "celery_core.cleanup_expired_results",
        "celery_core.cleanup_storage",
    } <= set(app.tasks)


def test_every_registered_task_routes_where_the_seed_says(app: Celery) -> None:
    names = _own_tasks(app)
    # All four queues are exercised by real or support tasks.
    assert {seed_queue(n) for n in names} == set(SEED_PRIORITY)
    for name in names:
        route = _route(app, name)
        queue = route["queue"]
        assert queue.name == seed_queue(name), name
        # A routing key, if any, must be the one bound to that queue.
        assert route.get("routing_key", queue.routing_key) == queue.routing_key == queue.name


def test_unknown_task_names_go_to_default(app: Celery) -> None:
    for name in ("backend.tasks.export", "builder.crawl", "celery_core.health_check"):
        assert _route(app, name)["queue"].name == "default"


def test_priority_order_matches_the_seed_in_redis_terms(app: Celery) -> None:
    """Redis serves priority 0 first, so the seed's numbers appear reversed."""
    redis_priority = {
        queue: _route(app, name)["priority"]
        for name, queue in (
            ("builder.tasks.crawl_task", "crawl"),
            ("validator.tasks.validate_task", "validation"),
            ("celery_core.health_check", "default"),
            ("celery_core.cleanup_storage", "maintenance"),
        )
    }
    by_seed = sorted(SEED_PRIORITY, key=lambda q: -SEED_PRIORITY[q])
    by_redis = sorted(redis_priority, key=lambda q: redis_priority[q])
    assert by_redis[0] == by_seed[0] == "crawl"
    assert by_redis[-1] == by_seed[-1] == "maintenance"
    assert redis_priority["validation"] == redis_priority["default"]
    transport = app.conf.broker_transport_options
    assert set(redis_priority.values()) <= set(transport["priority_steps"])
    assert transport["queue_order_strategy"] == "priority"


def test_explicit_queue_gets_a_consistent_destination(app: Celery) -> None:
    """``apply_async(queue=...)``: key and Redis priority bucket follow the chosen queue."""
    route = _route(app, "builder.tasks.crawl_task", queue="maintenance")
    queue = route["queue"]
    assert queue.name == "maintenance"
    assert route.get("routing_key", queue.routing_key) == "maintenance"
    assert route["priority"] == _route(app, "celery_core.cleanup_storage")["priority"]


def test_caller_priority_wins(app: Celery) -> None:
    assert _route(app, "celery_core.cleanup_storage", priority=0)["priority"] == 0


def test_declared_queues_are_the_seeds(app: Celery) -> None:
    declared = {q.name: q for q in app.conf.task_queues}
    assert set(declared) == set(SEED_PRIORITY) == {q.name for q in QUEUES}
    for name, queue in declared.items():
        assert queue.routing_key == name
        assert queue.exchange.name == name
    assert app.conf.task_default_queue == "default"


def test_json_only(app: Celery) -> None:
    assert list(app.conf.accept_content) == ["json"]
    assert list(app.conf.result_accept_content) == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert "pickle" not in str(app.conf.accept_content)
