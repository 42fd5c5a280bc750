"""Build what a worker and beat build from the settings, without connecting to anything.

The field checks in :mod:`config` refuse the values known to be unusable. This runs the
worker's own conversions on the result (the Celery configuration, its time zone, the
countdown a retry asks for, the beat schedule, the result backend and broker transport,
the socket timeouts), so that a mistake of a kind nobody listed still fails
``pixcrawler config check`` naming its variable, rather than a worker at runtime.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

from celery import Celery
from celery.schedules import BaseSchedule, maybe_schedule

from pixcrawler.celery_core.app import celery_config, create_app
from pixcrawler.celery_core.config import CHECK_FILES_HERE, CelerySettings, env_name
from pixcrawler.celery_core.scrub import scrub, secrets_of

#: Celery configuration keys holding socket timeouts, and the setting each comes from.
SOCKET_TIMEOUTS = {
    "redis_socket_timeout": "redis_socket_timeout",
    "redis_socket_connect_timeout": "redis_connect_timeout",
}
TRANSPORT_SOCKET_TIMEOUTS = {
    "socket_timeout": "redis_socket_timeout",
    "socket_connect_timeout": "redis_connect_timeout",
}


def _settimeout(value: float) -> None:
    with socket.socket() as probe:
        probe.settimeout(value)


def _after_now(seconds: float) -> None:
    """A countdown, due time or expiry: Celery adds it to the current time."""
    datetime.now(UTC) + timedelta(seconds=seconds)


def _transport(app: Celery) -> None:
    with app.connection_for_write() as connection:
        connection.transport  # noqa: B018 - instantiating it is the check


def worker_problems(settings: CelerySettings) -> list[tuple[str, str]]:
    """What a worker or beat built from *settings* would fail on, as (variable, reason)."""
    secrets = secrets_of(settings)
    problems: list[tuple[str, str]] = []

    def attempt(field: str, what: str, action: Callable[[], Any]) -> bool:
        try:
            action()
        except Exception as exc:  # whatever the worker would have died of
            reason = scrub(f"{what} fails: {type(exc).__name__}: {exc}", secrets)
            problems.append((env_name(field), reason))
            return False
        return True

    app = create_app(settings)
    try:
        _build(app, settings, attempt)
    finally:
        app.close()
    return list(dict.fromkeys(problems))


Attempt = Callable[[str, str, Callable[[], Any]], bool]


def _build(app: Celery, settings: CelerySettings, attempt: Attempt) -> None:
    # Reading the configuration evaluates celery_config(settings), as a worker's start does.
    built = lambda: app.conf.beat_schedule  # noqa: E731 - the first read builds it all
    if not attempt(_culprit(settings), "building the Celery configuration", built):
        return
    conf = app.conf
    if attempt("timezone", "resolving the time zone (beat, every ETA)", app.now):
        for name, entry in conf.beat_schedule.items():
            attempt("cleanup_interval", f"scheduling beat entry {name}", _due(app, entry))
    attempt(
        "task_retry_backoff_max",
        "scheduling the longest retry countdown",
        lambda: _after_now(settings.task_retry_backoff_max),
    )
    backend: Any = None

    def create_backend() -> None:
        nonlocal backend
        backend = app.backend

    if attempt("result_backend", "creating the result backend", create_backend):
        attempt("result_expires", "expiring results", lambda: _after_now(backend.expires))
    attempt("broker_url", "loading the broker transport", lambda: _transport(app))
    timeouts: list[tuple[str, str, float]] = [
        (field, f"the socket timeout {key}", conf[key]) for key, field in SOCKET_TIMEOUTS.items()
    ]
    timeouts += [
        (field, f"the broker's {key}", conf.broker_transport_options[key])
        for key, field in TRANSPORT_SOCKET_TIMEOUTS.items()
    ]
    timeouts += [
        (field, "a crawl's socket timeout", getattr(settings, field))
        for field in ("crawl_connect_timeout", "crawl_read_timeout")
    ]
    for field, what, value in timeouts:
        attempt(field, f"setting {what}", partial(_settimeout, value))
    attempt(
        "storage_retention_days",
        "expiring an image's duplicate record",
        lambda: _after_now(settings.storage_retention_seconds),
    )
    _storage(settings, attempt)


def _storage(settings: CelerySettings, attempt: Attempt) -> None:
    """Build the image store as a worker does on its first task; nothing is connected.

    For s3:// that configures the client (endpoint, region, addressing style, timeouts,
    the CA bundle's certificates); reaching the bucket is the verification's job.
    """
    from pixcrawler.storage import open_store
    from pixcrawler.storage.location import S3Location

    if not isinstance(settings.storage_location, S3Location):
        return
    bundle = settings.storage_s3_ca_bundle
    if bundle is not None and not CHECK_FILES_HERE.get():
        # The bundle is the host's: build the client without it here.
        settings = settings.model_copy(update={"storage_s3_ca_bundle": None})
    elif bundle is not None:
        from pixcrawler.storage.s3 import read_ca_bundle

        if not attempt(
            "storage_s3_ca_bundle", "reading the CA bundle", lambda: read_ca_bundle(bundle)
        ):
            return
    attempt("storage_url", "building the S3 image store", lambda: open_store(settings).close())


def _due(app: Celery, entry: dict[str, Any]) -> Callable[[], Any]:
    """What beat computes on each tick: whether the entry is due, from its last run."""

    def check() -> Any:
        schedule = cast("BaseSchedule", maybe_schedule(entry["schedule"], app=app))
        return schedule.is_due(datetime.now(UTC))

    return check


def _culprit(settings: CelerySettings) -> str:
    """The setting whose value breaks celery_config(), found by putting back each default.

    The configuration is built in one piece, so its exception does not say which value
    it choked on; rebuilding it with one setting at its default at a time does.
    """
    for field, info in CelerySettings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        try:
            celery_config(settings.model_copy(update={field: default}))
        except Exception:  # noqa: S112 - still broken without this one: not the culprit
            continue
        return field
    return "*"
