"""The seed's documented usage works verbatim: its import paths, its worker command, its snippets.

Code written against the seed's integration guides (``from celery_core.app import
get_celery_app``, ``celery -A celery_core.app worker``, ``chain(crawl_task.s(url),
validate_task.s())``) must keep working; this runs exactly that against a real worker
started with the seed's ``-A celery_core.app``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Worker
from tests.support.http_fixtures import LoopbackHTTPServer, Route
from tests.support.images import png


@pytest.fixture(scope="module")
def seed_worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    w = Worker(worker_env, logdir=tmp_path_factory.mktemp("seed"), app="celery_core.app").start()
    yield w
    w.stop()
    w.kill()


def test_seed_aliases_are_the_same_objects() -> None:
    import builder.tasks
    import celery_core.app
    import celery_core.base
    import celery_core.tasks
    import validator.tasks

    import pixcrawler.builder.tasks
    import pixcrawler.celery_core.app
    import pixcrawler.celery_core.base
    import pixcrawler.validator.tasks

    assert celery_core.app.get_celery_app() is pixcrawler.celery_core.app.get_celery_app()
    assert celery_core.app.app is pixcrawler.celery_core.app.app
    assert celery_core.base.BaseTask is pixcrawler.celery_core.base.BaseTask
    assert builder.tasks.crawl_task is pixcrawler.builder.tasks.crawl_task
    assert validator.tasks.validate_task is pixcrawler.validator.tasks.validate_task
    assert celery_core.tasks.health_check.name == "celery_core.health_check"


def test_seed_health_check_snippet(seed_worker: Worker) -> None:
    # The seed's test_celery.py, as written.
    from celery_core.tasks import health_check

    result = health_check.delay()
    value = result.get(timeout=30)
    assert value["status"] == "success"
    assert value["data"]["queue"] == "default"
    # The worker started the seed's way (-A celery_core.app) is up and answers by name;
    # which worker ran the task is not fixed (the session worker consumes default too).
    replies = health_check.app.control.ping(destination=[seed_worker.name], timeout=5)
    assert [next(iter(r)) for r in replies or []] == [seed_worker.name]


def test_seed_chain_snippet(
    seed_worker: Worker, http_server: LoopbackHTTPServer, storage_dir: Path
) -> None:
    from builder.tasks import crawl_task
    from celery import chain
    from validator.tasks import validate_task

    url = http_server.add(Route(body=png("seed-api", (80, 60)), content_type="image/png"))
    workflow = chain(crawl_task.s(url), validate_task.s())
    result = workflow.apply_async()
    value = result.get(timeout=60)
    assert value["task"] == "validator.tasks.validate_task"
    assert len(value["data"]["valid"]) == 1
    stored = Path(value["data"]["valid"][0])
    assert stored.is_file()
    assert storage_dir.resolve() in stored.parents


def test_seed_style_task_definition_uses_shared_app_and_base() -> None:
    """The seed's "Defining Tasks" example, called directly (no worker needed)."""
    from celery_core.app import get_celery_app
    from celery_core.base import BaseTask

    app = get_celery_app()

    @app.task(bind=True, base=BaseTask, name="my_package.my_task")
    def my_task(self: BaseTask, arg1: str) -> str:
        return f"Processed {arg1}"

    value = my_task("x")
    assert value["data"] == "Processed x"
    assert value["schema"] == "pixcrawler.result/v1"
    assert app.amqp.router.route({}, "my_package.my_task")["queue"].name == "default"
