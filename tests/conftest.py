"""Shared fixtures: one real redis-server per test session, real workers on demand, and
one real SeaweedFS S3 server for the tests of the S3 image store.

The test process itself is a Celery client, so its ``PIXCRAWLER_CELERY_*`` environment is
set here, at import time, before any test module imports the app.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import RedisServer, Worker, settings_env
from tests.support.http_fixtures import LoopbackHTTPServer, serving
from tests.support.seaweed import SeaweedServer, seaweed

SESSION_DIR = Path(tempfile.mkdtemp(prefix="pixcrawler-tests-"))
REDIS_PASSWORD = "test-" + secrets.token_hex(12)
REDIS = RedisServer(SESSION_DIR / "redis", REDIS_PASSWORD)
STORAGE = SESSION_DIR / "storage"
ENV = settings_env(REDIS, STORAGE)
os.environ.update({k: v for k, v in ENV.items() if k.startswith("PIXCRAWLER_")})


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    REDIS.start()
    yield REDIS
    REDIS.stop()
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def worker_env(redis_server: RedisServer) -> dict[str, str]:
    return dict(ENV)


@pytest.fixture(scope="session")
def storage_dir() -> Path:
    STORAGE.mkdir(parents=True, exist_ok=True)
    return STORAGE


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def worker(worker_env: dict[str, str], storage_dir: Path) -> Iterator[Worker]:
    """One worker on every queue, shared by the tests that only need 'a worker'."""
    logs = SESSION_DIR / "logs"
    logs.mkdir(exist_ok=True)
    w = Worker(worker_env, logdir=logs, include="tests.support.tasks").start()
    yield w
    w.stop()
    w.kill()


@pytest.fixture(scope="session")
def http_server() -> Iterator[LoopbackHTTPServer]:
    """The loopback HTTP server crawls are pointed at (127.0.0.1 only)."""
    with serving() as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """``weed server`` on loopback: bucket ``images`` (the app's), ``other`` (another
    identity's), and ``absent``, which the app may use but which does not exist."""
    with seaweed(
        SESSION_DIR / "seaweed", app_buckets=("images", "absent"), absent_buckets=("absent",)
    ) as server:
        yield server


#: Fixtures that start a real server or worker: a test that asks for one is an integration test.
LIVE_FIXTURES = frozenset({"redis_server", "worker_env", "worker", "seaweed_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The directory says what kind a test is: ``tests/integration`` gets the marker, and a
    test under ``tests/unit`` that asks for Redis or a worker is an error, not a slow unit."""
    for item in items:
        kind = item.path.relative_to(Path(__file__).parent).parts[0]
        if kind == "integration":
            item.add_marker(pytest.mark.integration)
        live = LIVE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if kind == "unit" and live:
            raise pytest.UsageError(
                f"{item.nodeid} uses {', '.join(sorted(live))}: move it to tests/integration"
            )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unit-only runs never start Redis, whose teardown removes SESSION_DIR otherwise."""
    shutil.rmtree(SESSION_DIR, ignore_errors=True)
