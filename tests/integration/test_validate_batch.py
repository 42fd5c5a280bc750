"""validate_task on a list, as a batch crawl hands it through a chain, on a real worker.

Each file keeps its own outcome, in the order of the list: a bad file is an ``invalid``
outcome beside the good ones, a file seen by an earlier task is a ``duplicate`` naming
that task, the same content twice in one list is the same task's and stays ``valid``.
Only a list with nothing acceptable is FAILURE, and a bad payload is FAILURE without
harming the worker. The duplicate registry is asked once per list (one pipeline); these
outcomes are what that must keep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import chain
from celery.result import AsyncResult

from pixcrawler.builder.tasks import crawl_task
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.errors import TaskError
from pixcrawler.celery_core.tasks import health_check
from pixcrawler.validator.tasks import validate_task
from tests.support import images
from tests.support.harness import Worker
from tests.support.http_fixtures import LoopbackHTTPServer, Route

TIMEOUT = 60


def _failure(result: AsyncResult[Any]) -> TaskError:
    result.get(timeout=TIMEOUT, propagate=False)
    assert result.state == "FAILURE", result.state
    error = result.result
    assert isinstance(error, TaskError), repr(error)
    return error


def test_a_batch_crawl_chained_to_validation_keeps_each_files_outcome(
    worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    earlier = images.png("batch-earlier")
    first = chain(
        crawl_task.s(http_server.add(Route(body=earlier), "batch-earlier")), validate_task.s()
    ).apply_async()
    assert first.get(timeout=TIMEOUT)["data"]["outcomes"][0]["status"] == "valid"

    twice = images.jpeg("batch-twice")
    bodies = {
        "png": images.png("batch-png", (80, 60)),
        "truncated": images.png("batch-truncated")[:-40],
        "twice-a": twice,
        "tiny": images.tiny_png("batch-tiny"),
        "earlier": earlier,
        "twice-b": twice,
    }
    urls = [http_server.add(Route(body=body), f"batch-{name}") for name, body in bodies.items()]
    urls.insert(2, http_server.add(Route(statuses=[404]), "batch-missing"))  # not crawled

    result = chain(crawl_task.s(urls), validate_task.s()).apply_async()
    data = result.get(timeout=TIMEOUT)["data"]

    crawled = result.parent
    assert isinstance(crawled, AsyncResult)
    files = crawled.get(timeout=TIMEOUT)["data"]["files"]
    assert len(files) == len(bodies)  # the 404 has no file; the others, in order
    statuses = [(o["status"], o.get("error")) for o in data["outcomes"]]
    assert statuses == [
        ("valid", None),
        ("invalid", "corrupt_image"),
        ("valid", None),
        ("invalid", "too_small"),
        ("duplicate", None),
        ("valid", None),  # the same content twice in one task: that task's own
    ]
    assert [o["path"] for o in data["outcomes"]] == files
    assert data["outcomes"][4]["duplicate_of"] == first.id
    assert data["outcomes"][2]["sha256"] == data["outcomes"][5]["sha256"]
    assert (data["duplicates"], data["invalid"]) == (1, 2)
    assert data["valid"] == [files[0], files[2], files[5]]
    png = data["outcomes"][0]
    assert (png["format"], png["width"], png["height"]) == ("PNG", 80, 60)


def test_a_list_of_references_keeps_missing_and_outside_files_per_file(
    worker: Worker, http_server: LoopbackHTTPServer, storage_dir: Path
) -> None:
    url = http_server.add(Route(body=images.png("batch-refs")), "batch-refs")
    [good] = crawl_task.delay(url).get(timeout=TIMEOUT)["data"]["files"]
    refs = [str(storage_dir / "ab" / ("0" * 64 + ".png")), "/etc/passwd", good]
    data = validate_task.delay(refs).get(timeout=TIMEOUT)["data"]
    assert [(o["path"], o["status"], o.get("error")) for o in data["outcomes"]] == [
        (refs[0], "invalid", "missing_file"),
        ("/etc/passwd", "invalid", "outside_store"),
        (good, "valid", None),
    ]


def test_a_list_with_nothing_acceptable_fails_with_every_outcome(
    worker: Worker, storage_dir: Path
) -> None:
    refs = ["/etc/passwd", str(storage_dir / "cd" / ("1" * 64 + ".jpg"))]
    error = _failure(validate_task.delay(refs))
    assert error.code == "validation_failed"
    outcomes = error.details["outcomes"]
    assert [o["error"] for o in outcomes] == ["outside_store", "missing_file"]


def test_a_bad_list_fails_without_harming_the_worker(worker: Worker) -> None:
    app = get_celery_app()
    for payload in (["/ok.png", 7], [], [None], {"files": [3]}):
        # send_task skips the client's own checks, as a foreign producer would.
        assert _failure(app.send_task(validate_task.name, args=[payload])).code == (
            "invalid_payload"
        )
    assert worker.alive
    assert "WorkerLostError" not in worker.log()
    assert health_check.delay().get(timeout=TIMEOUT)["data"]["hostname"] == worker.name
