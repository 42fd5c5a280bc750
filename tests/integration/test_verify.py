"""The operator's verification script, run as a subprocess against real Redis and workers.

This module starts its own redis-server (so it can be stopped or given the wrong
password without disturbing the session's) and its own workers. The script only ever
gets an env file, as on a host; nothing secret is on its command line.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import RedisServer, Worker, running, settings_env
from tests.support.verify_cli import (
    ALL_NAMES,
    LINE,
    SCRIPT,
    SENTINEL_ONLY,
    checks_of,
    explain,
    operator_env,
    run_script,
    statuses,
    write_env_file,
)

# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("verify-redis"), "vfy-" + secrets.token_hex(12))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("verify-store")


@pytest.fixture(scope="module")
def env(own_redis: RedisServer, store: Path) -> dict[str, str]:
    return settings_env(own_redis, store)


@pytest.fixture(scope="module")
def env_file(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_env_file(tmp_path_factory.mktemp("verify-env") / "pixcrawler.env", env)


@pytest.fixture(scope="module")
def three_queue_worker(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """Consumes everything but ``maintenance``: the all-in-one tests add that queue."""
    logs = tmp_path_factory.mktemp("verify-logs")
    with running(Worker(env, "crawl,validation,default", logdir=logs)) as worker:
        yield worker


@pytest.fixture
def maintenance_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    with running(Worker(env, "maintenance", logdir=tmp_path, pool="solo", concurrency=1)) as worker:
        yield worker


# --- helpers --------------------------------------------------------------------------------


# --- a working deployment -----------------------------------------------------------------------


def test_queue_without_consumer_fails_that_check(
    env_file: Path, three_queue_worker: Worker, store: Path
) -> None:
    proc = run_script("--env-file", str(env_file), "--json")

    assert proc.returncode == 1, explain(proc)
    assert json.loads(proc.stdout)["ok"] is False
    got = statuses(proc)
    assert got["consumers[maintenance]"] == "FAIL"
    assert "maintenance" in checks_of(proc)["consumers[maintenance]"]["detail"]
    # Nothing is published where nobody would take it.
    assert got["health_check[maintenance]"] == "SKIP"
    assert got["sentinel"] == "SKIP"  # a redis:// broker has no Sentinels to ask
    assert {n: s for n, s in got.items() if "maintenance" not in n} == {
        n: "SKIP" if n in SENTINEL_ONLY else "PASS" for n in ALL_NAMES if "maintenance" not in n
    }


def test_all_in_one_passes_every_check(
    env_file: Path, three_queue_worker: Worker, maintenance_worker: Worker, store: Path
) -> None:
    proc = run_script("--env-file", str(env_file), "--json")

    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout)["ok"] is True
    checks = checks_of(proc)
    assert list(checks) == ALL_NAMES
    assert {c["status"] for n, c in checks.items() if n not in SENTINEL_ONLY} == {"PASS"}, explain(
        proc
    )
    assert checks["sentinel"]["status"] == "SKIP"
    assert "not sentinel://" in checks["sentinel"]["detail"]
    assert maintenance_worker.name in checks["health_check[maintenance]"]["detail"]
    assert three_queue_worker.name in checks["health_check[crawl]"]["detail"]
    # The chain downloaded a new image into the workers' store, and validated it there;
    # the script deleted it afterwards, as it deleted its probe object.
    stored = re.search(
        r"crawled to (\S+) and validated: PNG", checks["crawl_validate_chain"]["detail"]
    )
    assert stored is not None
    path = Path(stored.group(1))
    assert path.parent.parent == store
    assert not path.exists()
    assert [p for p in store.rglob("*") if p.is_file()] == []
    assert "wrote, read and deleted a probe object" in checks["storage"]["detail"]


def test_chain_skipped_when_workers_may_not_fetch_from_here(
    env: dict[str, str], three_queue_worker: Worker, tmp_path: Path
) -> None:
    # Without 127.0.0.0/8 in the allow-list the crawl workers would refuse the image.
    refusing = write_env_file(tmp_path / "e.env", env, crawl_allowed_networks="")

    proc = run_script(
        "--env-file", str(refusing), "--queues", "crawl,validation", "--json", "--strict"
    )

    # --strict: the SKIP alone makes the run fail (without it the exit is 0, see below).
    assert proc.returncode == 1, explain(proc)
    assert json.loads(proc.stdout)["ok"] is False
    checks = checks_of(proc)
    chain = checks.pop("crawl_validate_chain")
    assert chain["status"] == "SKIP"
    assert "PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS" in chain["detail"]
    assert "--image-url" in chain["detail"]
    assert {c["status"] for n, c in checks.items() if n not in SENTINEL_ONLY} == {"PASS"}


def test_image_url_failure_names_the_failing_stage(
    env_file: Path, three_queue_worker: Worker, not_an_image_url: str
) -> None:
    proc = run_script(
        "--env-file",
        str(env_file),
        "--queues",
        "crawl,validation",
        "--json",
        "--image-url",
        not_an_image_url,
    )

    assert proc.returncode == 1, explain(proc)
    chain = checks_of(proc)["crawl_validate_chain"]
    assert chain["status"] == "FAIL"
    assert chain["detail"].startswith(f"crawl of {not_an_image_url} failed: not_an_image")


@pytest.fixture
def not_an_image_url() -> Iterator[str]:
    """A loopback server answering with text where the crawler expects an image."""

    class Text(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"this is not an image\n"
            self.send_response(200)
            self.send_header("Content-Type", "image/png")  # lies; the crawler sniffs
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Text)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fake.png"
    server.shutdown()
    server.server_close()
    thread.join()


def test_results_the_client_cannot_read_fail(
    own_redis: RedisServer, env: dict[str, str], three_queue_worker: Worker, tmp_path: Path
) -> None:
    """This host and the workers disagree on the result backend (diverging env files).

    The worker stores results in database 1 of the module's Redis. A client reading
    another server never gets an answer; a client reading another database of the same
    server gets it by pub/sub, yet a later poll would find nothing: both must FAIL.
    """
    elsewhere = RedisServer(tmp_path / "results", own_redis.password)
    elsewhere.start()
    other_server = write_env_file(tmp_path / "a.env", env, result_backend=elsewhere.url(1))
    other_db = write_env_file(tmp_path / "b.env", env, result_backend=own_redis.url(2))
    args = ("--queues", "default", "--timeout", "6")

    try:
        silent = run_script("--env-file", str(other_server), *args)
    finally:
        elsewhere.stop()
    unstored = run_script("--env-file", str(other_db), *args)

    for proc, reason in ((silent, "no result within"), (unstored, "is not stored in")):
        assert proc.returncode == 1, explain(proc)
        lines = {m.group(2): m for m in map(LINE.match, proc.stdout.splitlines()) if m}
        assert lines["consumers[default]"].group(1) == "PASS"
        assert lines["health_check[default]"].group(1) == "FAIL"
        assert reason in lines["health_check[default]"].group(4), explain(proc)
    # The worker did answer the unheard task, into its own backend; the script revoked it.
    revoked = re.search(r"task (\S+) revoked", silent.stdout)
    assert revoked is not None
    assert own_redis.client(1).exists(f"celery-task-meta-{revoked.group(1)}")


def test_least_privilege_acl_user_passes(
    own_redis: RedisServer, env: dict[str, str], three_queue_worker: Worker, tmp_path: Path
) -> None:
    """A user denied @dangerous (INFO among it) must not fail the connectivity checks."""
    password = "acl-" + secrets.token_hex(8)
    own_redis.client().acl_setuser(
        "verifier",
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@dangerous"],
    )
    url = f"redis://verifier:{password}@127.0.0.1:{own_redis.port}"
    config = write_env_file(
        tmp_path / "e.env", env, broker_url=f"{url}/0", result_backend=f"{url}/1"
    )

    proc = run_script("--env-file", str(config), "--queues", "default", "--json")

    assert proc.returncode == 0, explain(proc)
    checks = checks_of(proc)
    assert checks["broker"]["detail"].endswith(": PONG")  # INFO was refused, PING was not
    assert "redis://verifier:***@" in checks["broker"]["detail"]
    assert password not in proc.stdout + proc.stderr


# --- broken deployments -----------------------------------------------------------------------


def test_wrong_password_fails_broker_without_leaking_it(
    own_redis: RedisServer, env: dict[str, str], tmp_path: Path
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    bad = write_env_file(
        tmp_path / "e.env",
        env,
        broker_url=own_redis.url(0, password=wrong),
        result_backend=own_redis.url(1, password=wrong),
    )

    proc = run_script("--env-file", str(bad))

    assert proc.returncode == 1, explain(proc)
    *report, summary = proc.stdout.splitlines()
    assert all(LINE.match(line) for line in report), explain(proc)
    assert summary == "FAILED: 2 passed, 2 failed, 10 skipped"  # settings, storage pass
    lines = {m.group(2): m for m in map(LINE.match, report) if m}
    assert list(lines) == ALL_NAMES
    assert lines["broker"].group(1) == "FAIL"
    assert "authentication failed" in lines["broker"].group(4)
    assert lines["result_backend"].group(1) == "FAIL"
    for dependent in ("consumers[crawl]", "health_check[crawl]", "crawl_validate_chain"):
        assert lines[dependent].group(1) == "SKIP"
    for secret in (wrong, own_redis.password):
        assert secret not in proc.stdout + proc.stderr


def test_redis_down_fails_fast_and_skips_the_rest(
    env: dict[str, str], store: Path, tmp_path: Path
) -> None:
    """Also runs the script as copied to /opt/pixcrawler/bin, with the venv's python."""
    gone = RedisServer(tmp_path / "redis", "gone-" + secrets.token_hex(8))
    gone.start()
    gone.stop()
    config = write_env_file(tmp_path / "e.env", settings_env(gone, store))
    bindir = tmp_path / "opt" / "pixcrawler" / "bin"
    bindir.mkdir(parents=True)
    copy = Path(shutil.copy(SCRIPT, bindir))
    shell = {k: v for k, v in operator_env().items() if k != "PYTHONPATH"}
    shell["PIXCRAWLER_ENV_FILE"] = str(config)

    proc = run_script("--timeout", "10", "--json", script=copy, cwd=tmp_path, env=shell)

    assert proc.returncode == 1, explain(proc)
    checks = checks_of(proc)
    assert checks["broker"]["status"] == "FAIL"
    assert "cannot connect" in checks["broker"]["detail"]
    assert f"127.0.0.1:{gone.port}" in checks["broker"]["detail"]
    assert checks["result_backend"]["status"] == "FAIL"
    assert checks["storage"]["status"] == "PASS"  # a local store needs no Redis
    assert {checks[n]["status"] for n in ALL_NAMES[5:]} == {"SKIP"}
    assert gone.password not in proc.stdout + proc.stderr


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a hung Redis, as seen by a client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    listener.close()
    for conn in accepted:
        conn.close()


def test_hung_broker_is_bounded_by_timeout(
    env: dict[str, str], tmp_path: Path, silent_server: int
) -> None:
    url = f"redis://:pw-{secrets.token_hex(6)}@127.0.0.1:{silent_server}"
    config = write_env_file(
        tmp_path / "e.env", env, broker_url=f"{url}/0", result_backend=f"{url}/1"
    )

    proc = run_script("--env-file", str(config), "--timeout", "3", "--json")

    assert proc.returncode == 1, explain(proc)
    checks = checks_of(proc)
    assert checks["broker"]["status"] == "FAIL"
    assert "timeout" in checks["broker"]["detail"]
    assert checks["crawl_validate_chain"]["status"] == "SKIP"


def test_bad_env_file_exits_2_naming_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    secret = "s3cr3t-" + secrets.token_hex(6)
    bad = write_env_file(
        tmp_path / "e.env",
        env,
        broker_url=f"http://:{secret}@127.0.0.1:1/0",
        worker_concurency="4",
    )

    proc = run_script("--env-file", str(bad), "--json")
    missing = run_script("--env-file", str(tmp_path / "absent.env"))

    assert proc.returncode == 2, explain(proc)
    settings = checks_of(proc)["settings"]
    assert settings["status"] == "FAIL"
    assert "PIXCRAWLER_CELERY_BROKER_URL" in settings["detail"]
    assert "PIXCRAWLER_CELERY_WORKER_CONCURENCY" in settings["detail"]
    assert secret not in proc.stdout + proc.stderr
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert "PIXCRAWLER_ENV_FILE" in missing.stderr


def test_storage_check_skips_a_local_store_of_another_user(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Root's probe would leave a shard directory the service user cannot write into."""
    owned = tmp_path / "images"
    owned.mkdir()
    os.chown(owned, 4321, 4321)  # the tests run as root (scripts/test), as Ansible does
    config = write_env_file(tmp_path / "e.env", env, storage_dir=str(owned))

    lenient = run_script("--env-file", str(config), "--queues", "default", "--json")
    strict = run_script("--env-file", str(config), "--queues", "default", "--json", "--strict")

    storage = checks_of(lenient)["storage"]
    assert storage["status"] == "SKIP", explain(lenient)
    assert storage["detail"].startswith(f"not run as the service user: {owned} belongs to uid 4321")
    assert list(owned.iterdir()) == []  # nothing written
    assert checks_of(strict)["storage"]["status"] == "SKIP"
    assert strict.returncode == 1  # --strict counts the SKIP
