"""``BaseTask``: logging, the result envelope and the retry policy in one place.

The original tasks combined ``autoretry_for`` with manual ``self.retry`` and so published
two retry messages for one failure, retried bad arguments forever, and returned failures
as SUCCESS. Here the only retry decision is :meth:`BaseTask._fail`: transient errors are
retried once per failure with exponential backoff and jitter, everything else ends as
FAILURE with a :class:`TaskError` that says why.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

import redis.exceptions
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded

from pixcrawler.celery_core.app import settings_of
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.errors import RetryRemaining, TaskError, TransientError

ENVELOPE_SCHEMA = "pixcrawler.result/v1"
#: The code of a failure nobody foresaw (a bug): logged with its traceback.
UNEXPECTED = "unexpected_error"

#: Exceptions that mean "the world was briefly unavailable", not "the input is wrong".
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.timeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

logger = logging.getLogger("pixcrawler.task")


def envelope(task: Task[Any, Any], data: Any, duration: float) -> dict[str, Any]:
    """The standard result every PixCrawler task returns."""
    request = task.request
    return {
        "schema": ENVELOPE_SCHEMA,
        "status": "success",
        "task": task.name,
        "task_id": request.id,
        "queue": _queue_of(task),
        "retries": request.retries or 0,
        "duration_ms": round(duration * 1000, 3),
        "finished_at": datetime.now(UTC).isoformat(),
        "data": data,
    }


def unwrap(value: Any) -> Any:
    """Give a chained task the previous task's ``data``, not its envelope."""
    if isinstance(value, dict) and value.get("schema") == ENVELOPE_SCHEMA and "data" in value:
        return value["data"]
    return value


def backoff_delay(retries: int, base: float, maximum: float) -> float:
    """Exponential backoff with "equal jitter": between half and all of base*2**n."""
    ceiling = min(maximum, base * (2**retries))
    return random.uniform(ceiling / 2, ceiling)


def classify(exc: BaseException) -> TaskError:
    """Map any exception to a TaskError whose ``retryable`` says what to do next."""
    if isinstance(exc, TaskError):
        return exc
    if isinstance(exc, SoftTimeLimitExceeded):
        return TaskError("time_limit", "task exceeded its soft time limit")
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return TransientError("transient", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, TypeError | ValueError):
        return TaskError("invalid_payload", f"{type(exc).__name__}: {exc}")
    return TaskError(UNEXPECTED, f"{type(exc).__name__}: {exc}")


def _queue_of(task: Task[Any, Any]) -> str | None:
    info = task.request.delivery_info or {}
    queue = info.get("routing_key")
    return str(queue) if queue else None


class BaseTask(Task):  # type: ignore[type-arg]
    """Base class for every PixCrawler task (``@app.task(bind=True, base=BaseTask)``)."""

    #: Retries are decided here, never by ``autoretry_for``.
    autoretry_for = ()
    #: Expected failures: Celery logs them in one line at INFO, without a traceback;
    #: our own ``task_failed`` line says what went wrong (``_fail``).
    throws = (TaskError,)
    #: ``celery inspect`` replies show the masked argument copies (amqp.py).
    Request = "pixcrawler.celery_core.amqp:MaskedRequest"
    #: Per-task override of ``PIXCRAWLER_CELERY_TASK_MAX_RETRIES``; None = the setting.
    max_retries: int | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(unwrap(arg) for arg in args)
        start = time.perf_counter()
        try:
            data = self.run(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:  # every other failure goes through one policy
            self._fail(exc, time.perf_counter() - start)
        duration = time.perf_counter() - start
        self._log("task_succeeded", duration=duration)
        return envelope(self, data, duration)

    @property
    def settings(self) -> CelerySettings:
        """The settings this task's app was built with; never a second copy."""
        return settings_of(self.app)

    def can_retry(self) -> bool:
        """Whether a transient failure now would be retried rather than final."""
        limit = self.max_retries if self.max_retries is not None else self.settings.task_max_retries
        return not self.request.called_directly and (self.request.retries or 0) < limit

    def can_defer(self) -> bool:
        """Whether :meth:`defer` can send this task again (not when called directly)."""
        return not self.request.called_directly and not self.request.is_eager

    def defer(self, kwargs: dict[str, Any], countdown: float, reason: str) -> NoReturn:
        """Send this task again in *countdown* seconds with *kwargs*, spending no retry.

        For work that waited rather than failed: a crawl whose remaining URLs all wait
        on busy sites (builder/polite.py). As a retry it would count against
        ``TASK_MAX_RETRIES``, and a batch of a big site would fail after a few turns
        with nothing wrong. It is Celery's own retry (same task id, chain and callbacks
        kept, state RETRY meanwhile) with the retry count left as it was.
        """
        request = self.request
        signature = self.signature_from_request(
            request,
            None,
            {**(request.kwargs or {}), **kwargs},
            countdown=countdown,
            retries=request.retries or 0,
        )
        self._log(
            "task_deferred",
            duration=None,
            countdown=round(countdown, 3),
            reason=reason,
        )
        try:
            signature.apply_async()
        except Exception as exc:
            # Not sent: back to the queue as it came rather than lost (acks_late).
            raise Reject(exc, requeue=True) from exc
        raise Retry(exc=TransientError("deferred", reason), when=countdown, sig=signature)  # type: ignore[arg-type]

    def _fail(self, exc: Exception, duration: float) -> None:
        error = classify(exc)
        settings = self.settings
        retries = self.request.retries or 0
        if error.retryable and self.can_retry():
            countdown = backoff_delay(
                retries, settings.task_retry_backoff, settings.task_retry_backoff_max
            )
            retry_kwargs = None
            if isinstance(error, RetryRemaining):
                # Not sooner than the server asked (capped where it was read).
                countdown = max(countdown, error.retry_after or 0.0)
                if error.retry_kwargs is not None:
                    retry_kwargs = {**(self.request.kwargs or {}), **error.retry_kwargs}
            self._log(
                "task_retrying",
                level=logging.WARNING,
                duration=duration,
                error=str(error),
                retry=retries + 1,
                countdown=round(countdown, 3),
            )
            # One retry message per failure; max_retries=None because we checked above.
            raise self.retry(
                exc=error, countdown=countdown, max_retries=None, kwargs=retry_kwargs
            ) from exc
        if error.retryable:
            error = TaskError(
                "retries_exhausted",
                f"gave up after {retries} retries: {error.message}",
                {"last_error": error.code, **error.details},
            )
        # Bad input, a refused destination, not an image: the task did its job, one line
        # at WARNING says why. A bug is an ERROR, with its traceback.
        unexpected = not isinstance(exc, TaskError) and error.code == UNEXPECTED
        self._log(
            "task_failed",
            level=logging.ERROR if unexpected else logging.WARNING,
            duration=duration,
            error=str(error),
            exc_info=exc if unexpected else None,
        )
        raise error from exc

    def _log(
        self,
        event: str,
        *,
        level: int = logging.INFO,
        duration: float | None,
        exc_info: BaseException | None = None,
        **extra: Any,
    ) -> None:
        fields: dict[str, Any] = {
            "event": event,
            "task": self.name,
            "task_id": self.request.id,
            "queue": _queue_of(self),
            "retries": self.request.retries or 0,
        }
        if duration is not None:
            fields["duration_ms"] = round(duration * 1000, 3)
        fields.update({"pid": os.getpid(), **extra})
        if not logger.isEnabledFor(level):
            return
        if self.settings.log_json:
            logger.log(level, json.dumps(fields, default=str), exc_info=exc_info)
        else:
            line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
            logger.log(level, line, exc_info=exc_info)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text
