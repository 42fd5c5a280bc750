"""TLS on every Redis link for real: through a Sentinel, and the certificates a client
must refuse.

One master with the pixcrawler_redis role's own TLS profile and a Sentinel that speaks
TLS to its clients and to the master, on loopback. Workers, results and the verification
script's Sentinel check reach them with SENTINEL_TLS and the CA alone; a plain client
gets nowhere. Then three servers whose certificates must be refused by the settings'
defaults: expired, for another name, from an unknown CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pixcrawler.celery_core.config import load_settings
from pixcrawler.verify_sentinel import check_sentinels
from tests.support.harness import (
    RedisServer,
    SentinelServer,
    TlsFiles,
    Worker,
    client_app,
    running,
    settings_env,
    watched_master,
)

PASSWORD = "tls-sentinel-test-" + "q" * 16
TIMEOUT = 60


@pytest.fixture(scope="module")
def tls_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServer]:
    base = tmp_path_factory.mktemp("tls-sentinel")
    with watched_master(base, PASSWORD, tls=TlsFiles(base / "pki")) as watcher:
        yield watcher


def test_the_sentinel_and_the_master_speak_tls_only(tls_sentinel: SentinelServer) -> None:
    for port in (tls_sentinel.port, tls_sentinel.master.port):
        plain = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        with pytest.raises(redis.exceptions.ConnectionError):
            plain.ping()


def test_workers_and_results_through_a_tls_sentinel(
    tls_sentinel: SentinelServer, tmp_path: Path
) -> None:
    env = tls_sentinel.env(tmp_path / "images", broker_db=4)
    worker = Worker(env, "default", logdir=tmp_path, pool="solo", concurrency=1)
    with client_app(env) as app, running(worker):
        envelope = app.send_task("celery_core.health_check").get(timeout=TIMEOUT)
    assert envelope["status"] == "success"
    assert PASSWORD not in worker.log()


def test_the_verification_asks_the_tls_sentinel(
    tls_sentinel: SentinelServer, tmp_path: Path
) -> None:
    settings = load_settings(tls_sentinel.env(tmp_path / "images", broker_db=4))
    assert "1 Sentinels" in check_sentinels(settings, io_timeout=5)


def test_without_sentinel_tls_the_client_gets_nowhere(
    tls_sentinel: SentinelServer, tmp_path: Path
) -> None:
    """The setting is what turns TLS on: a sentinel:// URL alone speaks plain text."""
    env = tls_sentinel.env(tmp_path / "images", broker_db=4, sentinel_tls="false")
    with client_app(env) as app, pytest.raises(redis.exceptions.ConnectionError):
        app.backend.client.ping()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def good_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles(tmp_path_factory.mktemp("good-pki"))


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "certificate has expired"),
        ("other-name", "Hostname mismatch|doesn't match|IP address mismatch"),
        ("unknown-ca", "unable to get local issuer certificate|self.signed|verify failed"),
    ],
)
def test_a_bad_server_certificate_is_refused(
    case: str, reason: str, good_pki: TlsFiles, tmp_path: Path
) -> None:
    """What the settings' defaults refuse, each for its own reason (in the error)."""
    pki = {
        "expired": lambda: TlsFiles(tmp_path / "pki", days=-1, ca=good_pki),
        "other-name": lambda: TlsFiles(tmp_path / "pki", names=("redis-9.example",), ca=good_pki),
        "unknown-ca": lambda: TlsFiles(tmp_path / "pki"),
    }[case]()
    server = RedisServer(tmp_path / "redis", PASSWORD, tls=pki)
    server.start()
    try:
        env = settings_env(server, tmp_path / "images", redis_ssl_ca_certs=str(good_pki.ca))
        with client_app(env) as app:
            client = app.backend.client  # type: ignore[attr-defined]
            with pytest.raises(redis.exceptions.ConnectionError, match=reason):
                client.ping()
        # The same server with its own CA (and the name it was made for) is fine: the
        # refusal is the certificate's, not the server's.
        if case == "unknown-ca":
            trusted = settings_env(server, tmp_path / "images", redis_ssl_ca_certs=str(pki.ca))
            with client_app(trusted) as app:
                assert app.backend.client.ping()  # type: ignore[attr-defined]
    finally:
        server.stop()
