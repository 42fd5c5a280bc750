"""Crawl tasks (``builder.tasks.*``, routed to the ``crawl`` queue)."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from pixcrawler.builder.batch import carry, is_final, restore, run_batch
from pixcrawler.builder.fetch import HopGuard, download
from pixcrawler.builder.polite import Politeness, describe, politeness_for, run_polite
from pixcrawler.celery_core.app import get_celery_app, result_client, settings_of
from pixcrawler.celery_core.base import BaseTask, classify
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.errors import InvalidPayload, RetryRemaining, TaskError
from pixcrawler.celery_core.redact import strip_userinfo
from pixcrawler.storage import get_store

app = get_celery_app()

MAX_URLS_PER_TASK = 1000
#: Turns a task may wait for busy sites without spending a retry (polite.py). With the
#: default CRAWL_SITE_WAIT_MAX that is over an hour and a half of a site being busy.
MAX_DEFERRALS = 500
logger = logging.getLogger("pixcrawler.crawl")


def _urls(payload: Any) -> list[str]:
    urls = [payload] if isinstance(payload, str) else payload
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise InvalidPayload(message="expected a URL string or a non-empty list of URL strings")
    if len(urls) > MAX_URLS_PER_TASK:
        raise InvalidPayload(message=f"at most {MAX_URLS_PER_TASK} URLs per task")
    return urls


def crawl_one(
    url: str, settings: CelerySettings, hop_guard: HopGuard | None = None
) -> dict[str, Any]:
    """Download one URL; the outcome says what happened, it never raises."""
    try:
        result = download(url, get_store(settings), settings, hop_guard)
    except Exception as exc:  # one URL's failure must not hide the others' outcomes
        error = classify(exc)
        outcome: dict[str, Any] = {
            "url": strip_userinfo(url) if isinstance(url, str) else repr(url),
            "status": "error",
            "error": error.code,
            "message": error.message,
            "retryable": error.retryable,
        }
        if "retry_after" in error.details:
            outcome["retry_after"] = error.details["retry_after"]
        return outcome
    return {
        "url": result.url,
        "status": "ok",
        "path": result.stored.ref,
        "sha256": result.stored.sha256,
        "bytes": result.stored.size,
        "content_type": result.content_type,
        "already_stored": result.stored.existed,
    }


@signals.worker_ready.connect
def announce_politeness(sender: Any = None, **_: Any) -> None:
    """Say at start what the crawl obeys and whom it exempts: never silently."""
    level, line = describe(settings_of(app))
    logger.log(level, line)


def _politeness(task: BaseTask) -> Politeness | None:
    settings = task.settings
    if not (settings.crawl_obey_robots or settings.crawl_site_limits):
        return None
    return politeness_for(result_client(task.app), settings)


@app.task(bind=True, base=BaseTask, name="builder.tasks.crawl_task")
def crawl_task(
    self: BaseTask,
    urls: str | list[str],
    _done: dict[str, Any] | None = None,
    _deferrals: int = 0,
) -> dict[str, Any]:
    """Download one URL or a list, ``CRAWL_BATCH_CONCURRENCY`` at a time, politely
    (robots.txt, per-site limits: polite.py); per-URL outcomes in the result, in the
    order of the URLs.

    A transient failure retries the task for the URLs that failed transiently only: the
    retry message carries the other outcomes in ``_done`` (batch.py), and waits at least
    the longest ``Retry-After`` a server asked for. Once retries are spent, partial success
    is SUCCESS with the failed URLs in ``outcomes``; no success at all is FAILURE.

    URLs left waiting on busy sites for ``CRAWL_SITE_WAIT_MAX`` are deferred: the task
    sends itself again for them without spending a retry (``_deferrals`` counts the
    turns, at most ``MAX_DEFERRALS``; after that they are ``site_busy`` failures).
    """
    settings = self.settings
    url_list = _urls(urls)
    if not isinstance(_deferrals, int) or _deferrals < 0:
        raise InvalidPayload(message="_deferrals must be a count")
    done = restore(url_list, _done)
    pending = [i for i in range(len(url_list)) if i not in done]
    politeness = _politeness(self)
    deferred: list[int] = []
    wait_hint = 0.0
    if politeness is None:
        fresh = run_batch(
            url_list,
            pending,
            lambda url: crawl_one(url, settings),
            settings.crawl_batch_concurrency,
        )
    else:
        run = run_polite(
            url_list,
            pending,
            lambda url: crawl_one(url, settings, politeness.hop),
            politeness,
            settings.crawl_batch_concurrency,
        )
        fresh, deferred, wait_hint = run.outcomes, run.deferred, run.wait_hint
    by_index = {**done, **fresh}
    failed = [o for o in by_index.values() if o["status"] != "ok"]
    again = [o for o in failed if not is_final(o)]
    if deferred and not (again and self.can_retry()):
        if _deferrals < MAX_DEFERRALS and self.can_defer():
            self.defer(
                {"_done": carry(by_index), "_deferrals": _deferrals + 1},
                countdown=min(max(wait_hint, 1.0), settings.site_wait_seconds),
                reason=f"{len(deferred)} of {len(url_list)} URLs wait on busy sites",
            )
        for i in deferred:
            by_index[i] = {
                "url": strip_userinfo(url_list[i]),
                "status": "error",
                "error": "site_busy",
                "message": f"its site stayed busy for {_deferrals} turns of "
                f"{settings.site_wait_seconds} s",
                "retryable": True,
            }
    outcomes = [by_index[i] for i in range(len(url_list))]
    failed = [o for o in outcomes if o["status"] != "ok"]
    again = [o for o in failed if not is_final(o)]
    if again and self.can_retry():
        waits = [float(o["retry_after"]) for o in again if "retry_after" in o]
        raise RetryRemaining(
            "transient",
            f"{len(again)} of {len(outcomes)} URLs failed transiently or wait on busy sites "
            f"({', '.join(sorted({str(o['error']) for o in again}))}); retrying those",
            {"failed": len(again), "urls": len(outcomes)},
            retry_kwargs={"_done": carry(by_index), "_deferrals": _deferrals},
            retry_after=max(waits, default=None),
        )
    if len(failed) == len(outcomes):
        if len(outcomes) == 1:
            only = failed[0]
            raise TaskError(only["error"], only["message"], {"outcomes": outcomes})
        raise TaskError("crawl_failed", "no URL could be downloaded", {"outcomes": outcomes})
    files = [o["path"] for o in outcomes if o["status"] == "ok"]
    return {
        "files": files,
        "succeeded": len(files),
        "failed": len(failed),
        "deferrals": _deferrals,
        "outcomes": outcomes,
    }
