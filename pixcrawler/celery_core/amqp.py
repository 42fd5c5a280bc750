"""Task messages whose readable copies of the arguments carry no password.

Celery copies every task's arguments into ``argsrepr``/``kwargsrepr``: the message
headers, the task-sent and task-received events (what Flower shows and keeps). A crawl
URL may carry ``user:password@``: the task needs it, those copies do not. Celery builds
every message here (``delay``, ``apply_async``, ``send_task``, retries, chains), so
masking here covers every path; the arguments the worker runs with are left as they are.

``celery inspect active``, ``reserved``, ``scheduled`` and ``query_task`` (and so
Flower's task pages) answer with the arguments themselves, unless the caller asks for
``safe``: :class:`MaskedRequest` always answers with the masked copies.
"""

from __future__ import annotations

from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr
from celery.worker.request import Request

from pixcrawler.celery_core.redact import redact_url


class RedactingAMQP(AMQP):
    """Celery's message factory with passwords masked in ``argsrepr``/``kwargsrepr``."""

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *rest: Any,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        **options: Any,
    ) -> Any:
        # Celery's own defaults for the copies, computed here so they can be masked.
        maxlevels = self.app.conf.task_repr_maxlevels
        if argsrepr is None:
            argsrepr = saferepr(args or (), self.argsrepr_maxsize, maxlevels=maxlevels)
        if kwargsrepr is None:
            kwargsrepr = saferepr(kwargs or {}, self.kwargsrepr_maxsize, maxlevels=maxlevels)
        # Celery passes most of the message's fields positionally (*rest); the stubs
        # cannot follow that, hence the untyped call.
        factory: Any = super().as_task_v2
        return factory(
            task_id,
            name,
            args,
            kwargs,
            *rest,
            argsrepr=redact_url(argsrepr),
            kwargsrepr=redact_url(kwargsrepr),
            **options,
        )


class MaskedRequest(Request):
    """A worker's request whose ``info()`` (every inspect reply) shows the masked copies.

    The copies are masked again here: a message from a producer that is not this app
    (another codebase's Celery, a script, protocol 1, which has no copies and gets them
    from the worker) carries them as its sender wrote them, and the worker repeats them
    in ``scheduled``/``reserved``/``active``/``query_task``, its task-received event and
    its own log lines.
    """

    @property
    def argsrepr(self) -> str:
        return redact_url(str(super().argsrepr or ""))

    @property
    def kwargsrepr(self) -> str:
        return redact_url(str(super().kwargsrepr or ""))

    def info(self, safe: bool = False) -> Any:
        info = super().info(safe=True)
        info["args"], info["kwargs"] = self.argsrepr, self.kwargsrepr
        return info

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.humaninfo()} {self.argsrepr} {self.kwargsrepr}>"
