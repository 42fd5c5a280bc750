"""What the Ansible role installs for each queue, read from the role itself.

The benchmark's "deployed" rows must run exactly what a production host runs, so nothing
here is copied: the per-queue settings come from the workers role's defaults (fallback,
then the queue's defaults, as ``tasks/main.yml`` combines them), rendered through the
role's own ``worker.env.j2``; the command line is the ``ExecStart=`` of
``systemd/pixcrawler-worker@.service`` (installed verbatim) with those values filled in;
the ``PIXCRAWLER_CELERY_*`` settings are the package's defaults plus the prod
environment's ``pixcrawler_settings`` (what the app role writes to pixcrawler.env), so
events, client reuse and requeue on restart are what a prod host gets. The queues are
the package's table (queues.py); a host runs ``instances`` units of each (the queue's
settings: ``pixcrawler-worker@<queue>``, then ``@<queue>-2`` ...; crawl one per core).

Only what a benchmark host must differ in is replaced, by name: the celery executable
(this venv's), the node name (unique per run) and, for the throughput task only, ``-I``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
import yaml  # type: ignore[import-untyped]

from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.queues import QUEUE_NAMES
from tests.support.paths import REPO
from tests.support.role_templates import render, role_vars

UNIT = REPO / "systemd" / "pixcrawler-worker@.service"
ROLE = "pixcrawler_workers"
#: The environment whose settings the rows carry.
ENV_FILE = REPO / "env" / "prod.yml"


@dataclass(frozen=True)
class DeployedQueue:
    """One queue's worker as a host runs it."""

    queue: str
    #: The unit's ExecStart= arguments after the executable, values filled in.
    argv: tuple[str, ...]
    #: The queue's settings file (worker-<queue>.env), as the role writes it.
    worker_env: dict[str, str]
    #: PIXCRAWLER_CELERY_* overrides in pixcrawler.env (without the prefix).
    settings: dict[str, str]
    instances: int
    events: bool
    client_reuse: bool
    requeue_on_restart: bool

    @property
    def pool(self) -> str:
        return self.worker_env["CELERY_POOL"]

    @property
    def concurrency(self) -> int:
        return int(self.worker_env["CELERY_CONCURRENCY"])

    def flags(self) -> tuple[str, ...]:
        """The command line after ``worker`` without queue and node name (the same on
        every host), for the report."""
        out: list[str] = []
        skip = False
        for arg in self.argv[self.argv.index("worker") + 1 :]:
            if skip:
                skip = False
                continue
            if arg in ("-Q", "-n"):
                skip = True
                continue
            out.append(arg)
        return tuple(out)


def _exec_start() -> str:
    """The unit's ExecStart= value, continuation lines joined."""
    text = UNIT.read_text()
    logical = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", text, re.MULTILINE)
    if logical is None:
        raise RuntimeError(f"{UNIT}: no ExecStart=")
    return logical.group(1).replace("\\\n", " ")


def _env_file(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return out


def queue_settings(queue: str, vcpus: int) -> dict[str, Any]:
    """fallback | queue_defaults[queue] | queue_settings[queue], as tasks/main.yml combines."""
    values = role_vars(ROLE, ansible_processor_vcpus=vcpus)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701 - not HTML
    defaults = values["pixcrawler_workers_queue_defaults"]
    if isinstance(defaults, str):
        defaults = yaml.safe_load(env.from_string(defaults).render(values))
    merged: dict[str, Any] = {}
    for part in (
        values["pixcrawler_workers_fallback"],
        defaults.get(queue) or {},
        (values["pixcrawler_workers_queue_settings"] or {}).get(queue) or {},
    ):
        for key, value in part.items():
            if isinstance(value, str) and "{{" in value:
                value = yaml.safe_load(env.from_string(value).render(values))
            merged[key] = value
    return merged


def worker_env(queue: str, vcpus: int) -> dict[str, str]:
    """worker-<queue>.env rendered from the role's template."""
    text = render(
        ROLE, "worker.env.j2", queue=queue, worker=queue, settings=queue_settings(queue, vcpus)
    )
    return _env_file(text)


def app_settings() -> dict[str, str]:
    """pixcrawler_settings of the shared group_vars, then the prod environment's."""
    shared = role_vars(ROLE).get("pixcrawler_settings") or {}
    prod = (yaml.safe_load(ENV_FILE.read_text()) or {}).get("pixcrawler_settings") or {}
    merged = {**shared, **prod}
    return {
        key.upper(): ",".join(map(str, v))
        if isinstance(v, list)
        else str(v).lower()
        if isinstance(v, bool)
        else str(v)
        for key, v in merged.items()
    }


def _flag(settings: dict[str, str], name: str) -> bool:
    default = CelerySettings.model_fields[name].default
    value = settings.get(name.upper())
    return bool(default) if value is None else value.lower() in ("1", "true", "yes", "on")


@cache
def deployed(queue: str, vcpus: int | None = None) -> DeployedQueue:
    """The worker a prod host runs for *queue* (``vcpus``: the host's, default this one's)."""
    if queue not in QUEUE_NAMES:
        raise KeyError(f"unknown queue {queue!r}; known: {', '.join(QUEUE_NAMES)}")
    cpus = vcpus or os.cpu_count() or 1
    wenv = worker_env(queue, cpus)
    command = re.sub(r"\$\{(\w+)\}", lambda m: wenv[m.group(1)], _exec_start())
    argv = tuple(command.replace("%i", queue).replace("%H", "localhost").split())
    settings = app_settings()
    return DeployedQueue(
        queue=queue,
        argv=argv[1:],
        worker_env=wenv,
        settings=settings,
        instances=int(queue_settings(queue, cpus)["instances"]),
        events=_flag(settings, "enable_monitoring"),
        client_reuse=_flag(settings, "redis_client_reuse"),
        requeue_on_restart=_flag(settings, "requeue_on_restart"),
    )


def command(queue: DeployedQueue, name: str, include: str | None = None) -> list[str]:
    """The unit's command for this machine: this venv's celery, a unique node name."""
    args = list(queue.argv)
    args[args.index("-n") + 1] = name
    return [sys.executable, "-m", "celery", *args, *(["-I", include] if include else [])]
