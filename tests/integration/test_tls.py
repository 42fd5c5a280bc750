"""rediss:// for real: a TLS-only redis-server, a worker and a client that verify it.

The settings' TLS options (``PIXCRAWLER_CELERY_REDIS_SSL_*``) reach both kombu (broker)
and the result backend; a server certificate from an unknown CA is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.harness import RedisServer, TlsFiles, Worker, client_app, running, settings_env

PASSWORD = "tls-test-password-5e6f"
TIMEOUT = 60


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    base = tmp_path_factory.mktemp("tls")
    server = RedisServer(base / "redis", PASSWORD, tls=TlsFiles(base / "pki"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_server_speaks_tls_only(tls_redis: RedisServer) -> None:
    assert tls_redis.url(0).startswith("rediss://")
    plain = redis.Redis(host="127.0.0.1", port=tls_redis.port, password=PASSWORD)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()


def test_worker_and_client_over_tls(tls_redis: RedisServer, tmp_path: Path) -> None:
    assert tls_redis.tls is not None
    env = settings_env(tls_redis, tmp_path / "images", redis_ssl_ca_certs=str(tls_redis.tls.ca))
    worker = Worker(env, "default", logdir=tmp_path, pool="solo", concurrency=1)
    with client_app(env) as app, running(worker):
        envelope = app.send_task("celery_core.health_check").get(timeout=TIMEOUT)
    assert envelope["status"] == "success"
    assert envelope["queue"] == "default"
    assert PASSWORD not in worker.log()


def test_an_unknown_ca_is_refused(tls_redis: RedisServer, tmp_path: Path) -> None:
    """Without the test CA the server's certificate does not verify (the default is required)."""
    env = settings_env(tls_redis, tmp_path / "images")
    with client_app(env) as app:
        client = app.backend.client  # type: ignore[attr-defined]
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
            client.ping()
