"""Task error types that survive JSON serialization into the result backend.

Celery stores an exception as its type, module and ``args`` and rebuilds it on the
client with ``cls(*args)``; keeping ``args == (code, message, details)`` and a matching
positional ``__init__`` makes the structured fields round-trip intact.
"""

from __future__ import annotations

from typing import Any


class TaskError(Exception):
    """A permanent failure: the task ends as FAILURE and is never retried."""

    retryable = False

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, details or {})

    @property
    def code(self) -> str:
        return str(self.args[0])

    @property
    def message(self) -> str:
        return str(self.args[1])

    @property
    def details(self) -> dict[str, Any]:
        details = self.args[2] if len(self.args) > 2 else {}
        return details if isinstance(details, dict) else {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TransientError(TaskError):
    """A failure worth retrying (network, timeout, HTTP 5xx/429)."""

    retryable = True


class RetryRemaining(TransientError):
    """A transient failure whose retry should run with other arguments, not later than asked.

    ``retry_kwargs`` replace the task's keyword arguments in the retry message (a crawl
    batch carries the outcomes already final); ``retry_after`` is the least countdown (a
    server's ``Retry-After``). Both are attributes, not ``args``: they steer this
    worker's retry and are not stored with the exception.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retry_kwargs: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, details)
        self.retry_kwargs = retry_kwargs
        self.retry_after = retry_after


class InvalidPayload(TaskError):
    """The task was called with arguments it cannot use; retrying would not help."""

    def __init__(
        self,
        code: str = "invalid_payload",
        message: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, details)
