"""``celery inspect`` (and so Flower's task pages) never shows a crawl URL's password.

The worker keeps the real arguments (the download needs them); every reply about a
running, reserved or queried task shows the masked copies instead.
"""

from __future__ import annotations

from celery import Celery

from pixcrawler.celery_core.app import get_celery_app
from tests.support import images
from tests.support.harness import RedisServer, Worker, wait_for
from tests.support.http_fixtures import LoopbackHTTPServer, Route

SECRET = "inspect-pw-" + "s" * 12


def test_inspect_replies_mask_crawl_passwords(
    worker: Worker, http_server: LoopbackHTTPServer
) -> None:
    app = get_celery_app()
    urls = [
        http_server.add(Route(body=images.png(f"inspect-{i}"), delay=3), "inspect").replace(
            "http://", f"http://crawler:{SECRET}@"
        )
        for i in range(4)
    ]
    results = [app.send_task("builder.tasks.crawl_task", args=[url]) for url in urls]
    inspect = app.control.inspect(destination=[worker.name], timeout=3)
    wait_for(lambda: bool((inspect.active() or {}).get(worker.name)), 30, "a crawl to run")
    replies = {
        "active": inspect.active(),
        "reserved": inspect.reserved(),
        "scheduled": inspect.scheduled(),
        "query_task": inspect.query_task(*[r.id for r in results]),
    }
    for result in results:
        result.get(timeout=60)
    shown = {name: repr(reply) for name, reply in replies.items()}
    assert "crawler:***@" in shown["active"], shown["active"]
    assert "crawler:***@" in shown["query_task"], shown["query_task"]
    leaked = [name for name, text in shown.items() if SECRET in text]
    assert not leaked, f"the password shows in: {', '.join(leaked)}"


def test_scheduled_retried_and_foreign_tasks_are_masked_too(
    worker: Worker, http_server: LoopbackHTTPServer, redis_server: RedisServer
) -> None:
    """``scheduled`` holds ETA tasks and every retry waiting for its countdown; a message
    from a producer that is not this app brings its own unmasked copies."""
    app = get_celery_app()

    def creds(url: str) -> str:
        return url.replace("http://", f"http://crawler:{SECRET}@")

    later = app.send_task(
        "builder.tasks.crawl_task",
        args=[creds(http_server.add(Route(body=images.png("eta")), "eta"))],
        countdown=120,
    )
    # A retry waiting 5 s for the server's Retry-After, with the batch's finished outcome.
    retried = app.send_task(
        "builder.tasks.crawl_task",
        args=[
            [
                creds(http_server.add(Route(body=images.png("ra-ok")), "ra")),
                creds(
                    http_server.add(
                        Route(
                            statuses=[503, 200], body=images.png("ra"), headers={"Retry-After": "5"}
                        ),
                        "ra",
                    )
                ),
            ]
        ],
    )
    foreign = Celery(broker=redis_server.url(0), set_as_current=False)
    try:
        other = foreign.send_task(
            "builder.tasks.crawl_task",
            args=[creds(http_server.add(Route(body=images.png("foreign")), "foreign"))],
            queue="crawl",
            countdown=120,
        )
    finally:
        foreign.close()
    inspect = app.control.inspect(destination=[worker.name], timeout=3)

    def scheduled_ids() -> set[str]:
        entries = (inspect.scheduled() or {}).get(worker.name) or []
        return {entry["request"]["id"] for entry in entries}

    ids = {later.id, retried.id, other.id}
    wait_for(lambda: ids <= scheduled_ids(), 30, "the three tasks to be scheduled")
    app.control.revoke([later.id, other.id])
    replies = {
        "scheduled": inspect.scheduled(),
        "query_task": inspect.query_task(*ids),
    }
    assert retried.get(timeout=60)["retries"] == 1
    shown = {name: repr(reply) for name, reply in replies.items()}
    leaked = [name for name, text in shown.items() if SECRET in text]
    assert not leaked, f"the password shows in: {', '.join(leaked)}"
    assert shown["scheduled"].count("crawler:***@") >= 4, shown["scheduled"]
    assert "_done" in shown["scheduled"]
    assert SECRET not in worker.log()
