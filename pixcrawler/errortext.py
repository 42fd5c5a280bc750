"""One line an operator can act on, for the errors a Redis-backed Celery client meets.

redis-py, kombu and Celery wrap each other's exceptions; the useful cause (a wrong
password, an ACL refusal, a timeout) is often a few links down the chain.
"""

from __future__ import annotations

import socket
from typing import Any


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """One line an operator can act on, for Redis/kombu/Celery errors."""
    import redis.exceptions

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for err in chain:
        text = str(err).strip() or type(err).__name__
        upper = text.upper()
        if isinstance(err, redis.exceptions.AuthenticationError) or any(
            marker in upper for marker in ("WRONGPASS", "NOAUTH", "AUTHENTICATION REQUIRED")
        ):
            return f"authentication failed: {text}"
        if isinstance(err, redis.exceptions.NoPermissionError) or upper.startswith("NOPERM"):
            hint = ""
            if "EVAL" in upper:
                # kombu keeps the bindings of expiring queues (Celery's control and
                # reply queues) alive with Lua scripts.
                hint = "; Celery remote control needs EVALSHA (allow +@scripting)"
            return f"permission denied by the Redis ACL: {text}{hint}"
        if isinstance(err, redis.exceptions.TimeoutError | TimeoutError | socket.timeout):
            within = f" within {timeout:g} s" if timeout else ""
            return f"no answer{within} (timeout): {text}"
        if isinstance(err, redis.exceptions.ConnectionError | ConnectionError):
            return f"cannot connect: {text}"
    return f"{type(exc).__name__}: {str(exc).strip()}"


def describe_task_error(value: Any) -> str:
    code = getattr(value, "code", None)
    message = getattr(value, "message", None)
    if code and message is not None:
        return f"{code}: {message}"
    return f"{type(value).__name__}: {value}"
