"""The one Celery app every PixCrawler process shares.

``celery -A pixcrawler.celery_core.app worker -Q crawl`` finds ``app`` here. The app is
lazy, as Celery's apps are meant to be: importing this module reads no setting. The
settings are loaded once, when the app's configuration is first needed (a worker does
that before it consumes anything, so a bad environment stops it with the message from
:class:`SettingsError`), and they stay on the app as :attr:`PixCrawlerCelery.settings`,
where tasks read them: one copy per app, the one its configuration was built from.
"""

from __future__ import annotations

import math
import sys
import warnings
from datetime import timedelta
from functools import cached_property, lru_cache
from typing import Any, cast

import redis
from celery import Celery, signals
from celery.exceptions import CPendingDeprecationWarning
from kombu import Exchange, Queue
from redis.backoff import NoBackoff
from redis.retry import Retry

# Celery rebuilds a task's exception on the client only from an imported module: importing
# the errors here keeps TaskError's code/message/details for every client of the app.
from pixcrawler.celery_core import errors as _errors  # noqa: F401

# Every message this app publishes carries its publish time (the exporter's queue age).
from pixcrawler.celery_core import stamps as _stamps  # noqa: F401

# Our transports, and the sentinel:// alias that keeps them across a failover to the next
# Sentinel URL (transport.py), registered before the app makes any connection.
from pixcrawler.celery_core import transport as _transport  # noqa: F401
from pixcrawler.celery_core.amqp import RedactingAMQP
from pixcrawler.celery_core.config import CelerySettings, load_settings, sentinel_addresses
from pixcrawler.celery_core.queues import (
    DEFAULT_QUEUE,
    PRIORITY_STEPS,
    QUEUE_NAMES,
    QUEUES,
    queue_for_task,
    queue_spec,
)

TASK_MODULES = (
    "pixcrawler.celery_core.tasks",
    "pixcrawler.builder.tasks",
    "pixcrawler.validator.tasks",
)


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Route by task name (the seed's contract) and stamp the queue's Redis priority.

    An explicit ``queue=`` or ``priority=`` from the caller still wins: Celery merges
    route options under the caller's own. The priority follows the queue that won, so a
    crawl task sent by hand to ``maintenance`` lands in maintenance's bucket instead of
    jumping ahead of validation work with crawl's; no routing key is returned, so Celery
    takes the winning queue's own.
    """
    explicit = (options or {}).get("queue")
    explicit_name = getattr(explicit, "name", explicit)
    spec = queue_spec(explicit_name) if explicit_name in QUEUE_NAMES else queue_for_task(name)
    return {"queue": spec.name, "priority": spec.redis_priority}


def _redis_transport_options(s: CelerySettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        # Must outlive the longest task and every countdown/ETA (checked in config).
        "visibility_timeout": s.visibility_timeout,
        # Poll queues in QUEUES order; BRPOP is bucket-major, so crawl comes first.
        "queue_order_strategy": "priority",
        "priority_steps": list(PRIORITY_STEPS),
        # Without a socket timeout a publish can hang forever on a half-open link.
        "socket_timeout": s.redis_socket_timeout,
        "socket_connect_timeout": s.redis_connect_timeout,
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": 25,
        # transport.py: the worker's deliveries come back as soon as it restarts.
        "pixcrawler_requeue_on_restart": s.requeue_on_restart,
        "pixcrawler_client_reuse": s.redis_client_reuse,
    }
    if s.sentinel_master_name:
        options["master_name"] = s.sentinel_master_name
        # Every Sentinel for Flower's broker view, which is otherwise given only the
        # first (pixcrawler/flower_broker.py); kombu reads the list from the URL itself.
        options["pixcrawler_sentinels"] = [
            [address.host, address.port]
            for address in sentinel_addresses(s.broker_url.get_secret_value())
        ]
        # redis-py gives the Sentinel connections only these, not the master's
        # timeouts: without them a Sentinel host that is down (no RST) holds up master
        # discovery for the kernel's TCP timeout, minutes, instead of failing over to
        # the next Sentinel in the list.
        # No retries either: redis-py's default retries a refused Sentinel three times
        # with backoff (about 3.5 s each), so every master discovery, after each
        # failover, waited that long per dead Sentinel before asking the next one. The
        # list of Sentinels is the retry.
        options["sentinel_kwargs"] = {
            **s.sentinel_kwargs(),
            "socket_timeout": s.redis_socket_timeout,
            "socket_connect_timeout": s.redis_connect_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
    return options


#: Waits between a task's publish attempts while the broker is down: 0, 1, 2, 2, ... s.
PUBLISH_RETRY_STEP = 1.0
PUBLISH_RETRY_MAX_WAIT = 2.0
#: Result writes back off with full jitter between 0 and this (Celery's own formula).
RESULT_RETRY_MAX_WAIT_MS = 2000


def _outage_retries(s: CelerySettings) -> dict[str, Any]:
    """Retry counts that make a task's publishes and result writes wait out an outage.

    Celery bounds both by a number of attempts, not by time, and its defaults give up
    within about a second for a publish (three quick tries): a chain whose first step
    finished during a Redis restart or a Sentinel failover was recorded as FAILURE and
    its next step never sent. The counts are chosen so the waits alone add up to at
    least ``BROKER_OUTAGE_TOLERANCE`` (for result writes, whose waits Celery draws at
    random, on average); each attempt's own connect time comes on top (refused at once,
    or ``REDIS_CONNECT_TIMEOUT`` on a host that does not answer).
    """
    tolerance = s.broker_outage_tolerance
    publish_retries = 3 + math.ceil(tolerance / PUBLISH_RETRY_MAX_WAIT)
    # Full jitter averages half the cap once the backoff reaches it.
    result_retries = 20 + math.ceil(tolerance * 2000 / RESULT_RETRY_MAX_WAIT_MS)
    return {
        "task_publish_retry_policy": {
            "max_retries": publish_retries,
            "interval_start": 0,
            "interval_step": PUBLISH_RETRY_STEP,
            "interval_max": PUBLISH_RETRY_MAX_WAIT,
        },
        "result_backend_always_retry": True,
        "result_backend_max_retries": result_retries,
        "result_backend_base_sleep_between_retries_ms": 100,
        "result_backend_max_sleep_between_retries_ms": RESULT_RETRY_MAX_WAIT_MS,
    }


def celery_config(s: CelerySettings) -> dict[str, Any]:
    """Translate settings into Celery's configuration keys."""
    transport = _redis_transport_options(s)
    conf: dict[str, Any] = {
        "broker_url": s.broker_url.get_secret_value(),
        "result_backend": s.result_backend.get_secret_value(),
        "broker_transport_options": transport,
        "result_backend_transport_options": dict(transport),
        # Celery's Redis result backend ignores the transport options' socket settings;
        # without these a hung Redis blocks a result read for 120 s per retry.
        "redis_socket_timeout": s.redis_socket_timeout,
        "redis_socket_connect_timeout": s.redis_connect_timeout,
        "redis_socket_keepalive": True,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 25,
        "visibility_timeout": s.visibility_timeout,
        "broker_connection_retry_on_startup": s.broker_connection_retry_on_startup,
        "broker_connection_max_retries": s.broker_connection_max_retries,
        "broker_channel_error_retry": True,
        # Never pickle: anyone able to write to the broker would run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": [
            Queue(q.name, Exchange(q.name, type="direct"), routing_key=q.name) for q in QUEUES
        ],
        "task_default_queue": DEFAULT_QUEUE,
        "task_default_exchange": DEFAULT_QUEUE,
        "task_default_routing_key": DEFAULT_QUEUE,
        "task_routes": (route_task,),
        "task_acks_late": s.task_acks_late,
        "task_reject_on_worker_lost": s.task_reject_on_worker_lost,
        "task_acks_on_failure_or_timeout": True,
        "task_track_started": s.task_track_started,
        "task_time_limit": s.task_time_limit,
        "task_soft_time_limit": s.task_soft_time_limit,
        "worker_concurrency": s.worker_concurrency,
        "worker_prefetch_multiplier": s.worker_prefetch_multiplier,
        "worker_max_tasks_per_child": s.worker_max_tasks_per_child,
        "worker_max_memory_per_child": s.worker_max_memory_per_child,
        # A task running when the broker link drops keeps running: our transport keeps
        # its delivery out of kombu's restore and acknowledges it once Redis is back
        # (transport.py), so it neither runs twice nor is killed. Celery's cancel would
        # kill prefork tasks (work lost, run again) and cannot stop threads at all.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_deduplicate_successful_tasks": s.task_acks_late,
        "worker_send_task_events": s.enable_monitoring,
        "task_send_sent_event": s.enable_monitoring,
        "result_expires": timedelta(seconds=s.result_expires),
        **_outage_retries(s),
        "timezone": s.timezone,
        "enable_utc": True,
        "beat_schedule": {
            "cleanup-expired-results": {
                "task": "celery_core.cleanup_expired_results",
                "schedule": float(s.cleanup_interval),
            },
            "cleanup-storage": {
                "task": "celery_core.cleanup_storage",
                "schedule": float(s.cleanup_interval),
            },
        },
        "include": list(TASK_MODULES),
    }
    # TLS to Redis: rediss://, or sentinel:// with SENTINEL_TLS (kombu and Celery then use
    # redis-py's Sentinel-managed TLS connections; the Sentinels' own links take the same
    # options through sentinel_kwargs).
    if s.broker_tls:
        conf["broker_use_ssl"] = s.ssl_options()
    # kombu's transports plus requeue on restart, deferred acks and client reuse
    # (transport.py).
    if s.broker_scheme in ("redis", "rediss"):
        conf["broker_transport"] = "pixcrawler.celery_core.transport:Transport"
    elif s.broker_scheme == "sentinel":
        conf["broker_transport"] = "pixcrawler.celery_core.transport:SentinelTransport"
    if s.backend_tls:
        conf["redis_backend_use_ssl"] = s.ssl_options()
    return conf


@signals.import_modules.connect
def flower_sees_every_sentinel(**_: Any) -> None:
    """In Flower's process, make its broker view ask every Sentinel (flower_broker.py).

    Flower imports the app's task modules when it starts, which sends this signal.
    Every ``celery`` command has loaded Flower's views (Flower registers its command
    with Celery's); elsewhere (the verification script, tests) nothing is imported.
    """
    if "flower.views" in sys.modules:
        from pixcrawler.flower_broker import install

        install()


@signals.worker_ready.connect
def quiet_cancel_warning(**_: Any) -> None:
    """Drop the warning Celery logs on every lost broker link: that cancelling running
    acks_late tasks will become the default. This app keeps them running on purpose
    (``celery_config``). Installed once the worker is ready, because the worker's log
    setup turns every Celery deprecation warning back on."""
    warnings.filterwarnings(
        "ignore",
        message=r"\s*In Celery 5\.1 we introduced an optional breaking change",
        category=CPendingDeprecationWarning,
    )


@signals.celeryd_init.connect
def record_worker_node(sender: str, conf: Any, **_: Any) -> None:
    """Give the transport this worker's node name (``crawl@host1``) before it connects.

    Its deliveries are recorded under that name, and at start it requeues what an
    earlier process of the same name left unacknowledged (transport.py).
    """
    conf.broker_transport_options = {**conf.broker_transport_options, "pixcrawler_node": sender}


class PixCrawlerCelery(Celery):
    """A Celery app that keeps the settings its configuration is built from."""

    @cached_property
    def settings(self) -> CelerySettings:
        """Loaded from the environment on first use unless :func:`create_app` was given them."""
        return load_settings()


def create_app(settings: CelerySettings | None = None) -> PixCrawlerCelery:
    """A new app; tests build their own, everything else uses :func:`get_celery_app`.

    Without *settings* nothing is read until the configuration is first needed.
    """
    # RedactingAMQP: no crawl URL password in task events or `celery inspect` (amqp.py).
    celery_app = PixCrawlerCelery("pixcrawler", set_as_current=True, amqp=RedactingAMQP)
    if settings is not None:
        celery_app.settings = settings
    # Celery calls this only when it first reads its configuration (its "laziness").
    celery_app.add_defaults(lambda: celery_config(celery_app.settings))
    return celery_app


def settings_of(celery_app: Celery) -> CelerySettings:
    """The settings *celery_app* was built with (tasks reach their app as ``self.app``)."""
    if not isinstance(celery_app, PixCrawlerCelery):
        raise TypeError(f"{celery_app!r} was not made by create_app(); it has no settings")
    return celery_app.settings


def result_client(celery_app: Celery) -> redis.Redis:
    """The redis-py client of the result backend (duplicate registry, result cleanup)."""
    return cast("redis.Redis", celery_app.backend.client)  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def get_celery_app() -> PixCrawlerCelery:
    """The shared app (the seed's API: ``from ...app import get_celery_app``)."""
    return create_app()


app = get_celery_app()
