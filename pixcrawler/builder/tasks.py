"""Crawl tasks (``builder.tasks.*``, routed to the ``crawl`` queue)."""

from __future__ import annotations

from typing import Any

from pixcrawler.builder.batch import carry, is_final, restore, run_batch
from pixcrawler.builder.fetch import download
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.base import BaseTask, classify
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.errors import InvalidPayload, RetryRemaining, TaskError
from pixcrawler.celery_core.redact import strip_userinfo
from pixcrawler.storage import get_store

app = get_celery_app()

MAX_URLS_PER_TASK = 1000


def _urls(payload: Any) -> list[str]:
    urls = [payload] if isinstance(payload, str) else payload
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise InvalidPayload(message="expected a URL string or a non-empty list of URL strings")
    if len(urls) > MAX_URLS_PER_TASK:
        raise InvalidPayload(message=f"at most {MAX_URLS_PER_TASK} URLs per task")
    return urls


def crawl_one(url: str, settings: CelerySettings) -> dict[str, Any]:
    """Download one URL; the outcome says what happened, it never raises."""
    try:
        result = download(url, get_store(settings), settings)
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


@app.task(bind=True, base=BaseTask, name="builder.tasks.crawl_task")
def crawl_task(
    self: BaseTask, urls: str | list[str], _done: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Download one URL or a list, ``CRAWL_BATCH_CONCURRENCY`` at a time; per-URL outcomes
    in the result, in the order of the URLs.

    A transient failure retries the task for the URLs that failed transiently only: the
    retry message carries the other outcomes in ``_done`` (batch.py), and waits at least
    the longest ``Retry-After`` a server asked for. Once retries are spent, partial success
    is SUCCESS with the failed URLs in ``outcomes``; no success at all is FAILURE.
    """
    settings = self.settings
    url_list = _urls(urls)
    done = restore(url_list, _done)
    pending = [i for i in range(len(url_list)) if i not in done]
    fresh = run_batch(
        url_list, pending, lambda url: crawl_one(url, settings), settings.crawl_batch_concurrency
    )
    by_index = {**done, **fresh}
    outcomes = [by_index[i] for i in range(len(url_list))]
    failed = [o for o in outcomes if o["status"] != "ok"]
    again = [o for o in failed if not is_final(o)]
    if again and self.can_retry():
        waits = [float(o["retry_after"]) for o in again if "retry_after" in o]
        raise RetryRemaining(
            "transient",
            f"{len(again)} of {len(outcomes)} URLs failed transiently "
            f"({', '.join(sorted({str(o['error']) for o in again}))}); retrying those",
            {"failed": len(again), "urls": len(outcomes)},
            retry_kwargs={"_done": carry(by_index)},
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
        "outcomes": outcomes,
    }
