"""``celery inspect`` (and so Flower's task pages) never shows a crawl URL's password.

The worker keeps the real arguments (the download needs them); every reply about a
running, reserved or queried task shows the masked copies instead.
"""

from __future__ import annotations

from pixcrawler.celery_core.app import get_celery_app
from tests.support import images
from tests.support.harness import Worker, wait_for
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
