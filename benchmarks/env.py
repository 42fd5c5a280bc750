"""One throwaway Redis and the worker profiles every benchmark compares side by side.

The Redis is the test harness's: Debian's redis-server on a free loopback port, password
in a 0600 config file (never on a command line), AOF ``everysec`` as in production.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from benchmarks.deployed import DeployedQueue, command
from pixcrawler.celery_core.app import create_app
from pixcrawler.celery_core.config import load_settings
from tests.support.harness import RedisServer, Worker, settings_env


@dataclass(frozen=True)
class Profile:
    """A worker configuration: pool, concurrency and the settings an env file would carry."""

    label: str
    pool: str
    concurrency: int
    settings: dict[str, str] = field(default_factory=dict)
    #: Extra ``celery worker`` arguments (e.g. ``--without-heartbeat``).
    extra: tuple[str, ...] = ()
    #: Worker processes (systemd instances) consuming the same queue.
    instances: int = 1
    #: PIXCRAWLER_CELERY_REDIS_CLIENT_REUSE and _REQUEUE_ON_RESTART (transport.py); the seed
    #: rows run without them so they stay the original behaviour.
    patched: bool = False
    #: Run exactly what the Ansible role installs for this queue (deployed.py): the
    #: unit's command line and the prod settings; pool and concurrency above are its own.
    deployed: DeployedQueue | None = None

    def describe(self) -> str:
        if self.deployed is not None:
            return self._describe_deployed(self.deployed)
        keys = {
            "WORKER_PREFETCH_MULTIPLIER": "prefetch",
            "TASK_TRACK_STARTED": "track_started",
            "ENABLE_MONITORING": "events",
            "TASK_ACKS_LATE": "acks_late",
            "WORKER_MAX_TASKS_PER_CHILD": "max_tasks_per_child",
        }
        parts = [f"{self.pool} -c {self.concurrency}"]
        if self.instances > 1:
            parts[0] = f"{self.instances} x ({parts[0]})"
        if self.patched:
            parts.append("+redis client reuse")
            if self.settings.get("REQUEUE_ON_RESTART", "true") == "true":
                parts.append("+requeue on restart")
        parts += [f"{short}={self.settings[k]}" for k, short in keys.items() if k in self.settings]
        parts += list(self.extra)
        return ", ".join(parts)

    def _describe_deployed(self, d: DeployedQueue) -> str:
        on = {True: "on", False: "off"}
        units = f"{d.instances} unit" + ("s" if d.instances > 1 else "")
        parts = [
            f"{units} `{' '.join(d.flags())}`",
            f"events {on[self.flag('ENABLE_MONITORING', d.events)]}",
            f"client reuse {on[self.flag('REDIS_CLIENT_REUSE', d.client_reuse)]}",
            f"requeue on restart {on[self.flag('REQUEUE_ON_RESTART', d.requeue_on_restart)]}",
        ]
        parts += [f"{k}={v} (env/prod.yml)" for k, v in d.settings.items()]
        flags = {"ENABLE_MONITORING", "REDIS_CLIENT_REUSE", "REQUEUE_ON_RESTART"}
        parts += [
            f"+{k}={v}"
            for k, v in self.settings.items()
            if k not in flags and d.settings.get(k) != v
        ]
        return ", ".join(parts)

    def flag(self, name: str, default: bool) -> bool:
        """A boolean setting of this row: its own value, else *default*."""
        value = self.settings.get(name)
        return default if value is None else value.lower() == "true"


#: Test settings of the harness's settings_env that a deployed host does not have.
HARNESS_ONLY = (
    "PIXCRAWLER_CELERY_TASK_RETRY_BACKOFF",
    "PIXCRAWLER_CELERY_TASK_RETRY_BACKOFF_MAX",
    "PIXCRAWLER_CELERY_WORKER_CONCURRENCY",
)

SEED_SETTINGS = {
    "WORKER_CONCURRENCY": "35",
    "WORKER_PREFETCH_MULTIPLIER": "1",
    "TASK_ACKS_LATE": "true",
    "TASK_TRACK_STARTED": "true",
    "ENABLE_MONITORING": "true",
}


def seed_profile(label: str = "seed") -> Profile:
    """The original PixCrawler settings: prefork, 35 processes, prefetch 1, everything on."""
    return Profile(label, "prefork", 35, dict(SEED_SETTINGS))


class BenchWorker(Worker):
    """A harness worker that is also "ready" when its log level hides the ready line.

    The control (pidbox) binding is declared as the consumer starts, so its presence in
    Redis means the worker is consuming, whatever ``--loglevel`` says.
    """

    def __init__(self, client: redis.Redis, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis = client

    def _ready(self) -> bool:
        if super()._ready():
            return True
        members = self._redis.smembers("_kombu.binding.celery.pidbox")
        return any(self.name.encode() in m for m in members)


class Bench:
    """The shared Redis, a scratch directory and helpers to run workers against it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pixcrawler-bench-"))
        self.password = "bench-" + secrets.token_hex(16)
        self.redis = RedisServer(self.root / "redis", self.password)
        self.storage = self.root / "storage"
        self.logs = self.root / "logs"
        self.logs.mkdir()

    def env(self, profile: Profile, **more: str) -> dict[str, str]:
        settings = {**profile.settings, **more}
        if profile.deployed is not None:
            # The package's defaults, as a host has them: the harness's test overrides go,
            # except where the broker, the store and the loopback image server are.
            env = settings_env(self.redis, self.storage, **settings)
            for key in HARNESS_ONLY:
                if key.removeprefix("PIXCRAWLER_CELERY_") not in settings:
                    env.pop(key, None)
            return env
        settings.setdefault("REDIS_CLIENT_REUSE", "true" if profile.patched else "false")
        settings.setdefault("REQUEUE_ON_RESTART", "true" if profile.patched else "false")
        settings.setdefault("WORKER_CONCURRENCY", str(profile.concurrency))
        # Politeness (robots.txt, per-site limits) is on by default but neither the seed
        # nor the one-site rows measure it; benchmarks/polite.py's row turns it on.
        settings.setdefault("CRAWL_OBEY_ROBOTS", "false")
        settings.setdefault("CRAWL_SITE_LIMITS", "false")
        return settings_env(self.redis, self.storage, **settings)

    def client_app(self, profile: Profile) -> Celery:
        """A client app with the profile's settings (sent events follow ENABLE_MONITORING)."""
        env = {k: v for k, v in self.env(profile).items() if k.startswith("PIXCRAWLER_")}
        return create_app(load_settings(env))

    @contextlib.contextmanager
    def workers(
        self, profile: Profile, queues: str, include: str | None = None, **more: str
    ) -> Iterator[list[Worker]]:
        """The profile's worker instances, started and ready; stopped (warm) afterwards."""
        started: list[Worker] = []
        try:
            for _ in range(profile.instances):
                worker: Worker = BenchWorker(
                    self.redis.client(),
                    self.env(profile, **more),
                    queues,
                    logdir=self.logs,
                    pool=profile.pool,
                    concurrency=profile.concurrency,
                    include=include,
                    extra=profile.extra,
                )
                if profile.deployed is not None:
                    worker.cmd = command(profile.deployed, worker.name, include)
                started.append(worker)
                worker.start()
            yield started
        finally:
            for worker in started:
                worker.stop()
                worker.kill()

    def reset_redis(self) -> None:
        """Empty every database and zero INFO commandstats between measurements."""
        client = self.redis.client()
        client.flushall()
        client.config_resetstat()

    def __enter__(self) -> Bench:
        self.redis.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.redis.stop()
        shutil.rmtree(self.root, ignore_errors=True)
