"""A client app for checks: the workers' configuration with short, bounded I/O."""

from __future__ import annotations

from celery import Celery

from pixcrawler.celery_core.config import CelerySettings


def client_app(settings: CelerySettings, io_timeout: float) -> Celery:
    """A Celery client with the workers' configuration but short, bounded I/O.

    Workers may wait 30 s on a socket and retry the result backend 20 times; a check
    must give up within its budget, so this app overrides exactly those knobs.
    """
    from pixcrawler.celery_core.app import create_app

    connect = min(settings.redis_connect_timeout, io_timeout)
    app = create_app(settings)
    transport = dict(app.conf.broker_transport_options or {})
    transport.update(
        socket_timeout=io_timeout,
        socket_connect_timeout=connect,
        retry_on_timeout=False,
        max_retries=1,
    )
    if "sentinel_kwargs" in transport:
        transport["sentinel_kwargs"] = {
            **transport["sentinel_kwargs"],
            "socket_timeout": io_timeout,
            "socket_connect_timeout": connect,
        }
    app.conf.update(
        broker_transport_options=transport,
        result_backend_transport_options=dict(transport),
        broker_connection_retry=False,
        broker_connection_max_retries=1,
        redis_socket_timeout=io_timeout,
        redis_socket_connect_timeout=connect,
        redis_retry_on_timeout=False,
        result_backend_always_retry=False,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
    )
    return app
