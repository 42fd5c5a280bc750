"""The S3 image store against a real SeaweedFS, through real workers.

Crawl and validation run on workers with different local directories (two "hosts" that
share no file system); the only thing they share is the bucket. This module has its own
redis-server, so the session worker (local store) never takes these tasks. Objects are
inspected with the admin identity, outside the code under test.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chain
from celery.result import AsyncResult

from pixcrawler.celery_core.config import load_settings
from pixcrawler.celery_core.errors import TaskError
from pixcrawler.storage import image_key, open_store
from pixcrawler.storage.s3 import S3Store
from tests.support import images
from tests.support.harness import (
    RedisServer,
    TlsFiles,
    Worker,
    client_app,
    free_port,
    running,
    settings_env,
)
from tests.support.http_fixtures import LoopbackHTTPServer, Route
from tests.support.seaweed import FaultProxy, SeaweedServer, seaweed
from tests.support.verify_cli import (
    SENTINEL_ONLY,
    checks_of,
    explain,
    run_script,
    write_env_file,
)

TIMEOUT = 60
CRAWL = "builder.tasks.crawl_task"
VALIDATE = "validator.tasks.validate_task"
CLEANUP = "celery_core.cleanup_storage"
#: This module's objects live under their own prefix of the shared test bucket.
PREFIX = f"s3test-{uuid.uuid4().hex[:8]}"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("s3-redis"), "s3-" + secrets.token_hex(12))
    server.start()
    yield server
    server.stop()


def host_env(
    redis_server: RedisServer,
    seaweed: SeaweedServer,
    local_dir: Path,
    *,
    alone: bool = False,
    **storage: str,
) -> dict[str, str]:
    """A worker's environment on a "host" with its own local directory, using S3.

    *alone*: its own broker and result databases, so that the module's crawl and
    validation workers never take its tasks (a worker with broken settings must be
    the one that runs them).
    """
    env = settings_env(redis_server, local_dir)
    if alone:
        env["PIXCRAWLER_CELERY_BROKER_URL"] = redis_server.url(2)
        env["PIXCRAWLER_CELERY_RESULT_BACKEND"] = redis_server.url(3)
    env.update(seaweed.env(**{"prefix": PREFIX, **storage}))
    return env


@pytest.fixture(scope="module")
def crawl_env(
    own_redis: RedisServer, seaweed_server: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return host_env(own_redis, seaweed_server, tmp_path_factory.mktemp("crawl-host"))


@pytest.fixture(scope="module")
def validation_env(
    own_redis: RedisServer, seaweed_server: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return host_env(own_redis, seaweed_server, tmp_path_factory.mktemp("validation-host"))


@pytest.fixture(scope="module")
def crawl_worker(
    crawl_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    logs = tmp_path_factory.mktemp("s3-crawl-logs")
    with running(Worker(crawl_env, "crawl", logdir=logs, pool="threads", concurrency=4)) as w:
        yield w


@pytest.fixture(scope="module")
def validation_worker(
    validation_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    logs = tmp_path_factory.mktemp("s3-validation-logs")
    with running(Worker(validation_env, "validation", logdir=logs)) as w:  # prefork, 2
        yield w


@pytest.fixture(scope="module")
def app(crawl_env: dict[str, str]) -> Iterator[Celery]:
    with client_app(crawl_env) as client:
        yield client


def admin_store(seaweed: SeaweedServer, bucket: str = "images", prefix: str = PREFIX) -> S3Store:
    """The test's own view of the bucket, as the administrator."""
    env = seaweed.env(
        bucket,
        prefix,
        storage_s3_access_key_id=seaweed.admin.access_key,
        storage_s3_secret_access_key=seaweed.admin.secret_key,
    )
    store = open_store(load_settings(env))
    assert isinstance(store, S3Store)
    return store


def ref_of(body: bytes, ext: str = "png", bucket: str = "images", prefix: str = PREFIX) -> str:
    return f"s3://{bucket}/{prefix}/{image_key(hashlib.sha256(body).hexdigest(), ext)}"


def files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def failure(result: AsyncResult[Any]) -> TaskError:
    result.get(timeout=TIMEOUT, propagate=False)
    assert result.state == "FAILURE", result.state
    error = result.result
    assert isinstance(error, TaskError), repr(error)
    return error


def local_dir(env: dict[str, str]) -> Path:
    return Path(env["PIXCRAWLER_CELERY_STORAGE_DIR"])


# --- two hosts, one bucket -------------------------------------------------------------------


def test_crawl_and_validation_on_two_hosts_share_only_the_bucket(
    app: Celery,
    crawl_worker: Worker,
    validation_worker: Worker,
    crawl_env: dict[str, str],
    validation_env: dict[str, str],
    http_server: LoopbackHTTPServer,
    seaweed_server: SeaweedServer,
) -> None:
    bodies = [images.png(f"two-hosts-{i}", (48 + i, 40)) for i in range(20)]
    urls = [http_server.add(Route(body=body), "s3-chain") for body in bodies]

    results = [
        chain(app.signature(CRAWL, args=(url,)), app.signature(VALIDATE)).apply_async()
        for url in urls
    ]
    values = [result.get(timeout=TIMEOUT) for result in results]

    for i, (body, value) in enumerate(zip(bodies, values, strict=True)):
        [outcome] = value["data"]["outcomes"]
        assert outcome["status"] == "valid", outcome
        assert outcome["path"] == ref_of(body)
        assert (outcome["width"], outcome["height"]) == (48 + i, 40)
        crawled = results[i].parent
        assert isinstance(crawled, AsyncResult)
        assert crawled.get(timeout=TIMEOUT)["data"]["files"] == [ref_of(body)]
    # Nothing went through either host's disk: the bucket is the only store.
    assert files_under(local_dir(crawl_env)) == []
    assert files_under(local_dir(validation_env)) == []
    admin = admin_store(seaweed_server)
    for body in bodies:
        assert admin.read(ref_of(body), len(body)) == body


def test_an_image_is_stored_once_across_retries_and_hosts(
    app: Celery,
    crawl_worker: Worker,
    http_server: LoopbackHTTPServer,
    seaweed_server: SeaweedServer,
) -> None:
    body, other = images.png("stored-once"), images.png("stored-once-flaky")
    good = http_server.add(Route(body=body), "once")
    flaky = http_server.add(Route(statuses=[503, 200], body=other), "once-flaky")

    # One URL fails transiently: the task retries that one only; the good one's outcome
    # is carried to the retry, not downloaded again.
    envelope = app.send_task(CRAWL, args=([good, flaky],)).get(timeout=TIMEOUT)

    assert envelope["retries"] == 1
    assert http_server.hits(good) == 1
    assert http_server.hits(flaky) == 2
    first, second = envelope["data"]["outcomes"]
    assert first["path"] == ref_of(body)
    assert (second["path"], second["already_stored"]) == (ref_of(other), False)
    # A third host (this process, its own empty directory) storing it finds it there.
    store = open_store(load_settings(seaweed_server.env(prefix=PREFIX)))
    with store.writer() as writer:
        writer.write(body)
        stored = writer.commit("png")
    assert (stored.ref, stored.existed) == (ref_of(body), True)
    names = [e.name for e in admin_store(seaweed_server).entries()]
    assert names.count(image_key(hashlib.sha256(body).hexdigest(), "png")) == 1


# --- references from the broker ----------------------------------------------------------------


def test_references_outside_the_store_are_refused_unread(
    app: Celery, validation_worker: Worker, seaweed_server: SeaweedServer
) -> None:
    body = images.png("outside-store")
    # A real image in another identity's bucket, under the same names: refused, not read.
    other = open_store(
        load_settings(
            seaweed_server.env(
                "other",
                PREFIX,
                storage_s3_access_key_id=seaweed_server.other.access_key,
                storage_s3_secret_access_key=seaweed_server.other.secret_key,
            )
        )
    )
    with other.writer() as writer:
        writer.write(body)
        in_other_bucket = writer.commit("png").ref
    name = image_key(hashlib.sha256(body).hexdigest(), "png")
    refused = [
        in_other_bucket,  # another bucket
        f"s3://images/elsewhere/{name}",  # another prefix of the same bucket
        f"s3://images/{PREFIX}-x/{name}",  # a prefix that only starts like ours
        f"s3://images/{PREFIX}/../elsewhere/{name}",
        f"s3://images/{PREFIX}/{name}?versionId=1",
        f"s3://images/{PREFIX}/notes.txt",  # not a name the store gives
        "/etc/passwd",
        "file:///etc/passwd",
        f"../{name}",
    ]

    error = failure(app.send_task(VALIDATE, args=[refused]))

    assert error.code == "validation_failed"
    outcomes = error.details["outcomes"]
    assert [o["error"] for o in outcomes] == ["outside_store"] * len(refused), outcomes
    assert all("outside" in o["message"] or "not" in o["message"] for o in outcomes)


def test_a_reference_to_an_absent_object_is_a_missing_file(
    app: Celery, validation_worker: Worker
) -> None:
    never_stored = ref_of(b"never stored " + os.urandom(8))
    error = failure(app.send_task(VALIDATE, args=[never_stored]))
    assert error.code == "missing_file"


# --- failures -------------------------------------------------------------------------------------


@pytest.fixture
def crawl_once(
    own_redis: RedisServer,
    seaweed_server: SeaweedServer,
    http_server: LoopbackHTTPServer,
    tmp_path: Path,
) -> Iterator[Any]:
    """Crawl one new image on a worker of its own with *storage* settings changed."""
    started: list[Worker] = []

    def crawl(*, prefix: str = PREFIX, faketime: str | None = None, **storage: str) -> Any:
        env = host_env(
            own_redis, seaweed_server, tmp_path / "host", alone=True, prefix=prefix, **storage
        )
        worker = Worker(
            env, "crawl", logdir=tmp_path, pool="solo", concurrency=1, name=f"c{len(started)}@x"
        )
        if faketime:
            worker.cmd = ["faketime", "-f", faketime, *worker.cmd]
        started.append(worker)
        worker.start()
        url = http_server.add(Route(body=images.png(f"broken-{uuid.uuid4()}")), "broken")
        with client_app(env) as client:
            result = client.send_task(CRAWL, args=(url,))
            result.get(timeout=TIMEOUT, propagate=False)
        return result, worker

    yield crawl
    for worker in started:
        worker.stop()
        worker.kill()


@pytest.mark.parametrize(
    ("storage", "code", "message"),
    [
        (
            {"storage_s3_secret_access_key": "wrong-" + secrets.token_hex(16)},
            "storage_credentials",
            "PIXCRAWLER_CELERY_STORAGE_S3_SECRET_ACCESS_KEY is wrong (SignatureDoesNotMatch)",
        ),
        (
            {"storage_s3_access_key_id": "NOSUCHKEY" + secrets.token_hex(6).upper()},
            "storage_credentials",
            "PIXCRAWLER_CELERY_STORAGE_S3_ACCESS_KEY_ID is not known to the object store",
        ),
        (
            {"bucket": "absent"},
            "storage_bucket",
            "bucket 'absent' does not exist at http://127.0.0.1:",
        ),
        (
            {"bucket": "other"},
            "storage_denied",
            "the identity of PIXCRAWLER_CELERY_STORAGE_S3_ACCESS_KEY_ID may not read in "
            "s3://other/",
        ),
        (
            {"faketime": "+20m"},
            "storage_clock",
            "synchronise the clocks with NTP (RequestTimeTooSkewed)",
        ),
    ],
    ids=["wrong-secret", "unknown-key", "missing-bucket", "not-allowed", "skewed-clock"],
)
def test_configuration_errors_name_the_setting_and_never_the_secret(
    crawl_once: Any, seaweed_server: SeaweedServer, storage: dict[str, str], code: str, message: str
) -> None:
    result, worker = crawl_once(**storage)

    error = failure(result)
    assert error.code == code
    assert message in error.message, error.message
    [outcome] = error.details["outcomes"]
    assert outcome["retryable"] is False  # retrying cannot fix a setting
    assert "event=task_retrying" not in worker.log()
    worker.stop()
    shown = repr(result.result) + repr(result.backend.get_task_meta(result.id)) + worker.log()
    for secret in (seaweed_server.app.secret_key, storage.get("storage_s3_secret_access_key")):
        if secret:
            assert secret not in shown


def test_an_unreachable_endpoint_is_retried_then_named(
    crawl_once: Any, seaweed_server: SeaweedServer
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    result, worker = crawl_once(storage_s3_endpoint_url=endpoint)

    error = failure(result)
    assert error.code == "storage_unavailable"
    assert error.message.startswith(
        f"cannot reach the object store at {endpoint} (PIXCRAWLER_CELERY_STORAGE_S3_ENDPOINT_URL)"
    )
    assert worker.log().count("event=task_retrying") == 3  # TASK_MAX_RETRIES
    assert seaweed_server.app.secret_key not in repr(error) + worker.log()


def test_a_transient_failure_is_retried_and_then_stores(
    crawl_once: Any, seaweed_server: SeaweedServer
) -> None:
    proxy = FaultProxy(seaweed_server.ports["s3"])
    try:
        proxy.reject(1)  # the first connection to the object store is reset

        result, worker = crawl_once(storage_s3_endpoint_url=proxy.endpoint)

        envelope = result.get(timeout=TIMEOUT)
        assert envelope["retries"] == 1
        assert proxy.rejected == 1
        [outcome] = envelope["data"]["outcomes"]
        assert admin_store(seaweed_server).exists(outcome["path"])
        assert "storage_unavailable" in worker.log()
    finally:
        proxy.close()


def test_a_body_that_fails_mid_stream_uploads_nothing(
    app: Celery,
    crawl_worker: Worker,
    http_server: LoopbackHTTPServer,
    seaweed_server: SeaweedServer,
) -> None:
    before = sorted(e.name for e in admin_store(seaweed_server).entries())
    url = http_server.add(Route(stream_bytes=21 * 1024 * 1024), "s3-huge")

    error = failure(app.send_task(CRAWL, args=(url,)))

    assert error.code == "too_large"
    assert sorted(e.name for e in admin_store(seaweed_server).entries()) == before
    assert seaweed_server.uploads_in_progress("images") == []


@pytest.mark.parametrize("size_mib", [4, 12], ids=["single-put", "multipart"])
def test_a_worker_killed_mid_upload_leaves_no_object(
    own_redis: RedisServer,
    seaweed_server: SeaweedServer,
    http_server: LoopbackHTTPServer,
    tmp_path: Path,
    size_mib: int,
) -> None:
    body = b"\x89PNG\r\n\x1a\n" + os.urandom(size_mib * 1024 * 1024)
    url = http_server.add(Route(body=body), "s3-killed")
    proxy = FaultProxy(seaweed_server.ports["s3"])
    env = host_env(
        own_redis,
        seaweed_server,
        tmp_path / "host",
        alone=True,
        storage_s3_endpoint_url=proxy.endpoint,
    )
    worker = Worker(env, "crawl", logdir=tmp_path, pool="solo", concurrency=1)
    try:
        proxy.stall_after(len(body) // 2)  # half the body reaches the store, then silence
        worker.start()
        with client_app(env) as client:
            client.send_task(CRAWL, args=(url,))
            assert proxy.stalled.wait(TIMEOUT), "the upload never started"
            worker.kill()
    finally:
        worker.kill()
        proxy.close()
    admin = admin_store(seaweed_server)
    assert not admin.exists(ref_of(body))
    assert image_key(hashlib.sha256(body).hexdigest(), "png") not in [
        e.name for e in admin.entries()
    ]


# --- cleanup -------------------------------------------------------------------------------------


def test_cleanup_deletes_objects_past_the_retention(
    own_redis: RedisServer, seaweed_server: SeaweedServer, tmp_path: Path
) -> None:
    prefix = f"{PREFIX}-cleanup"
    retention_seconds = 5
    env = host_env(
        own_redis,
        seaweed_server,
        tmp_path / "host",
        alone=True,
        prefix=prefix,
        storage_retention_days=f"{(retention_seconds + 0.01) / 86400:.10f}",
    )
    assert load_settings(env).storage_retention_seconds == retention_seconds
    store = open_store(load_settings(env))

    def put(seed: str) -> str:
        with store.writer() as writer:
            writer.write(images.png(seed))
            return writer.commit("png").ref

    old = [put(f"cleanup-old-{i}") for i in range(3)]
    neighbour = open_store(load_settings(seaweed_server.env(prefix=PREFIX)))
    with neighbour.writer() as writer:  # as old, but under the prefix beside this one
        writer.write(images.png("cleanup-neighbour"))
        beside = writer.commit("png").ref
    time.sleep(retention_seconds + 1.5)  # S3 keeps LastModified in whole seconds
    young = put("cleanup-young")

    maintenance = Worker(env, "maintenance", logdir=tmp_path, pool="solo", concurrency=1)
    with running(maintenance), client_app(env) as client:
        data = client.send_task(CLEANUP).get(timeout=TIMEOUT)["data"]

    assert (data["scanned"], data["removed"]) == (4, 3)
    assert data["bytes_freed"] == sum(len(images.png(f"cleanup-old-{i}")) for i in range(3))
    admin = admin_store(seaweed_server, prefix=prefix)
    assert [admin.exists(ref) for ref in old] == [False, False, False]
    assert admin.exists(young)
    # Only this store's prefix was swept; ".../s3test-x" is not under ".../s3test-x-cleanup".
    assert admin_store(seaweed_server).exists(beside)


# --- the verification script -------------------------------------------------------------------


def test_verification_passes_on_two_hosts_sharing_only_the_bucket(
    crawl_worker: Worker,
    validation_worker: Worker,
    tmp_path: Path,
    own_redis: RedisServer,
    seaweed_server: SeaweedServer,
) -> None:
    """The operator's host has a third local directory: only the bucket is common."""
    env = host_env(own_redis, seaweed_server, tmp_path / "operator-host")
    env_file = write_env_file(tmp_path / "pixcrawler.env", env)
    before = {e.name for e in admin_store(seaweed_server).entries()}

    first = run_script("--env-file", str(env_file), "--queues", "crawl,validation", "--json")
    second = run_script("--env-file", str(env_file), "--queues", "crawl,validation", "--json")

    for proc in (first, second):
        assert proc.returncode == 0, explain(proc)
        checks = checks_of(proc)
        assert {c["status"] for n, c in checks.items() if n not in SENTINEL_ONLY} == {"PASS"}, (
            explain(proc)
        )
        assert checks["storage"]["detail"].startswith(
            f"s3://images/{PREFIX}: wrote, read and deleted a probe object"
        )
        # A new image each run, validated as new (not a duplicate of the earlier run).
        chain_detail = checks["crawl_validate_chain"]["detail"]
        assert f"crawled to s3://images/{PREFIX}/" in chain_detail
        assert "duplicate" not in chain_detail
        assert seaweed_server.app.secret_key not in proc.stdout + proc.stderr
    assert (
        checks_of(first)["crawl_validate_chain"]["detail"].split()[3]
        != (checks_of(second)["crawl_validate_chain"]["detail"].split()[3])
    )
    # Probe objects and chain images are deleted; nothing of the runs is left.
    assert {e.name for e in admin_store(seaweed_server).entries()} == before
    assert files_under(tmp_path / "operator-host") == []


@pytest.mark.parametrize(
    ("storage", "reason"),
    [
        (
            {"storage_s3_secret_access_key": "wrong-" + secrets.token_hex(16)},
            "PIXCRAWLER_CELERY_STORAGE_S3_SECRET_ACCESS_KEY is wrong (SignatureDoesNotMatch)",
        ),
        ({"bucket": "absent"}, "bucket 'absent' does not exist"),
        (
            {"storage_s3_endpoint_url": "http://127.0.0.1:9"},
            "cannot reach the object store at http://127.0.0.1:9",
        ),
    ],
    ids=["wrong-secret", "missing-bucket", "unreachable"],
)
def test_verification_storage_check_fails_naming_the_setting(
    tmp_path: Path,
    own_redis: RedisServer,
    seaweed_server: SeaweedServer,
    storage: dict[str, Any],
    reason: str,
) -> None:
    env = host_env(own_redis, seaweed_server, tmp_path / "operator-host", **storage)
    env_file = write_env_file(tmp_path / "pixcrawler.env", env)

    proc = run_script("--env-file", str(env_file), "--queues", "default", "--json")

    assert proc.returncode == 1, explain(proc)
    check = checks_of(proc)["storage"]
    assert check["status"] == "FAIL"
    assert reason in check["detail"], check["detail"]
    for secret in (seaweed_server.app.secret_key, storage.get("storage_s3_secret_access_key")):
        if secret:
            assert secret not in proc.stdout + proc.stderr


# --- TLS -----------------------------------------------------------------------------------------


def test_an_https_endpoint_is_trusted_through_the_ca_bundle(tmp_path: Path) -> None:
    """A private CA: refused by default (a permanent error naming the setting), then
    trusted once STORAGE_S3_CA_BUNDLE names it."""
    tls = TlsFiles(tmp_path / "tls")
    with seaweed(tmp_path / "weed", tls=tls) as server:
        https = server.env(prefix="tls", storage_s3_endpoint_url=server.https_endpoint)
        body = images.png("over-tls")

        untrusted = open_store(load_settings(https)).writer()
        untrusted.write(body)
        with pytest.raises(TaskError) as info:
            untrusted.commit("png")
        assert info.value.code == "storage_tls"
        assert not info.value.retryable
        assert info.value.message == (
            f"the certificate of {server.https_endpoint} is not trusted; set "
            "PIXCRAWLER_CELERY_STORAGE_S3_CA_BUNDLE to the CA that signed it"
        )

        trusted = open_store(
            load_settings({**https, "PIXCRAWLER_CELERY_STORAGE_S3_CA_BUNDLE": str(tls.ca)})
        )
        with trusted.writer() as writer:
            writer.write(body)
            stored = writer.commit("png")
        assert trusted.read(stored.ref, len(body)) == body


@pytest.mark.parametrize(
    ("case", "names", "days", "reason"),
    [
        ("expired", ("127.0.0.1",), -1, "has expired or is not yet valid; renew it"),
        ("another name", ("s3.elsewhere.invalid",), 2, "does not name that host"),
    ],
)
def test_an_expired_or_misnamed_certificate_is_refused_even_from_the_trusted_ca(
    tmp_path: Path, case: str, names: tuple[str, ...], days: int, reason: str
) -> None:
    """The CA bundle trusts the issuer, not whatever it signed: an expired certificate,
    or one for another name, is refused like an unknown CA, and nothing is stored."""
    tls = TlsFiles(tmp_path / "tls", names=names, days=days)
    with seaweed(tmp_path / "weed", tls=tls) as server:
        env = server.env(
            prefix="tls",
            storage_s3_endpoint_url=server.https_endpoint,
            storage_s3_ca_bundle=str(tls.ca),
        )
        writer = open_store(load_settings(env)).writer()
        writer.write(images.png(f"refused-{case}"))
        with pytest.raises(TaskError) as info:
            writer.commit("png")
        assert info.value.code == "storage_tls", (case, info.value.message)
        assert reason in info.value.message  # not the unknown-CA refusal
        assert not info.value.retryable
