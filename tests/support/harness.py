"""Real processes for integration tests: a password-protected redis-server and Celery workers.

Nothing here is mocked. Redis is Debian's ``redis-server`` on a free loopback port, with
its password in a config file (never on a command line), and workers are
``celery -A pixcrawler.celery_core.app worker`` subprocesses with the same environment
an operator's env file would give them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from pixcrawler.celery_core.transport import UNACKED_OWNER_KEY
from tests.support.paths import REPO

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll *predicate* until true; fail with *what* so a hang names its cause."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def answers(client: redis.Redis, call: Callable[[redis.Redis], object]) -> bool:
    """Whether a server still starting answers *call* truthfully; the client is closed.

    The client should not retry: redis-py's default retry backs off for seconds on a
    refused connection, which is exactly what a server still starting gives.
    """
    try:
        return bool(call(client))
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def unacked_owners(client: Any) -> dict[str, int]:
    """Unacknowledged deliveries per node, read from the transport's owner records
    (decoded here, not by the transport's own parser under test)."""
    counts: dict[str, int] = {}
    for raw in client.hvals(UNACKED_OWNER_KEY):
        node = json.loads(raw)[0]
        counts[node] = counts.get(node, 0) + 1
    return counts


class TlsFiles:
    """A throw-away CA and a server certificate for *names* (default 127.0.0.1).

    *days* is the certificate's validity from now; a negative value makes one that
    expired that many days ago. *ca* reuses another TlsFiles' CA (a second host of the
    same environment), so tests can make every certificate a client must refuse.
    """

    def __init__(
        self,
        directory: Path,
        names: Sequence[str] = ("127.0.0.1",),
        days: int = 2,
        ca: TlsFiles | None = None,
    ) -> None:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        directory.mkdir(parents=True, exist_ok=True)
        self.ca = directory / "ca.crt"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        self._ca_key_file = directory / "ca.key"
        now = datetime.datetime.now(datetime.UTC)
        pem = serialization.Encoding.PEM

        def name(common: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
            path.write_bytes(
                key.private_bytes(
                    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            path.chmod(0o600)

        if ca is None:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = (
                x509.CertificateBuilder()
                .subject_name(name("pixcrawler-test CA"))
                .issuer_name(name("pixcrawler-test CA"))
                .public_key(ca_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256())
            )
            write_key(ca_key, self._ca_key_file)
            self.ca.write_bytes(ca_cert.public_bytes(pem))
        else:
            loaded = serialization.load_pem_private_key(ca._ca_key_file.read_bytes(), None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            ca_key = loaded
            ca_cert = x509.load_pem_x509_certificate(ca.ca.read_bytes())
            shutil.copy(ca.ca, self.ca)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)
        if days < 0:
            start = end - datetime.timedelta(days=2)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(names[0]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_key(key, self.key)
        self.cert.write_bytes(cert.public_bytes(pem))

    def redis_config(self, port: int) -> list[str]:
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self.cert}",
            f"tls-key-file {self.key}",
            f"tls-ca-cert-file {self.ca}",
            "tls-auth-clients no",
        ]


#: The test's own superuser on a shipped-profile server (see ``RedisServer(shipped=True)``).
ADMIN_USER = "pixcrawler-test-admin"


def terminate(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM (Redis and Sentinel save and exit cleanly on it), SIGKILL after *grace* s."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """One redis-server with a password, AOF persistence and its own directory.

    ``shipped=True`` runs the pixcrawler_redis role's own redis.conf and users.acl,
    rendered from its templates: clients connect as the role's app user with *password*,
    under its ACL permissions, and the default user is what the role makes of it. One
    line is the tests' own: an admin user for the test's inspection client (which also
    needs CONFIG and the like), never used by the code under test.
    """

    def __init__(
        self,
        workdir: Path,
        password: str,
        port: int | None = None,
        tls: TlsFiles | None = None,
        *,
        shipped: bool = False,
        extra: Sequence[str] = (),
        extra_users: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.password = password
        self.port = port or free_port()
        self.tls = tls
        self.shipped = shipped
        #: Test-only ACL lines after the role's own users (``shipped`` only), like the admin.
        self.extra_users = tuple(extra_users)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "redis.conf"
        self.log = workdir / "redis.log"
        base = self._shipped_config() if shipped else self._plain_config()
        # Test-only lines after the profile's own (replication, in tests/support/sentinels.py).
        self.config.write_text(base.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in extra))
        self.config.chmod(0o600)

    def _plain_config(self) -> str:
        # With TLS the plain port is closed: every client must speak TLS.
        listen = [f"port {self.port}"] if self.tls is None else self.tls.redis_config(self.port)
        return "\n".join(
            [
                "bind 127.0.0.1",
                *listen,
                f'requirepass "{self.password}"',
                f"dir {self.workdir}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "maxmemory-policy noeviction",
                f"logfile {self.log}",
                "daemonize no",
                "",
            ]
        )

    def _shipped_config(self) -> str:
        from tests.support.role_templates import render

        acl = self.workdir / "users.acl"
        role = "pixcrawler_redis"
        acl.write_text(
            render(
                role,
                "users.acl.j2",
                pixcrawler_redis_app_password=self.password,
                pixcrawler_redis_flower_password=self.password + "-flower",
                pixcrawler_sentinel_hosts=[],
                # With a monitoring host, as env/prod: the monitoring user exists.
                pixcrawler_monitoring_hosts=["monitoring"],
                pixcrawler_redis_monitor_password=self.monitor_password,
            )
            + f"user {ADMIN_USER} on >{self.password} ~* &* +@all\n"
            + "".join(f"{line}\n" for line in self.extra_users)
        )
        acl.chmod(0o600)
        conf = render(
            role,
            "redis.conf.j2",
            pixcrawler_redis_bind=["127.0.0.1"],
            pixcrawler_redis_port=self.port,
            pixcrawler_redis_listen_port=self.port if self.tls is None else 0,
            pixcrawler_redis_tls=self.tls is not None,
            **(
                {}
                if self.tls is None
                else {
                    "pixcrawler_redis_tls_cert_file": str(self.tls.cert),
                    "pixcrawler_redis_tls_key_file": str(self.tls.key),
                    "pixcrawler_redis_tls_server_ca_file": str(self.tls.ca),
                }
            ),
            pixcrawler_redis_dir=str(self.workdir),
            pixcrawler_redis_acl_file=str(acl),
            pixcrawler_service_manager_resolved="supervisor",  # no pidfile in /run/redis
            pixcrawler_sentinel_hosts=[],
        )
        # The role logs to stdout (the journal); the tests read a file.
        return conf.replace('logfile ""', f"logfile {self.log}")

    @property
    def monitor_password(self) -> str:
        """The password of the role's monitoring user (``monitor``) on a shipped server."""
        return self.password + "-monitor"

    @property
    def app_user(self) -> str:
        from tests.support.role_templates import role_vars

        return str(role_vars("pixcrawler_redis")["pixcrawler_redis_app_user"])

    def url(self, db: int, password: str | None = None) -> str:
        secret = self.password if password is None else password
        scheme = "redis" if self.tls is None else "rediss"
        user = self.app_user if self.shipped else ""
        return f"{scheme}://{user}:{secret}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0, retry: Retry | None = None, verify: bool = True) -> redis.Redis:
        """The tests' own client. ``verify=False`` only asks whether the server is up: the
        refusal tests start servers with certificates no client may accept."""
        ca = None if self.tls is None else str(self.tls.ca)
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=ADMIN_USER if self.shipped else None,
            password=self.password,
            db=db,
            ssl=ca is not None,
            ssl_ca_certs=ca,
            ssl_cert_reqs="required" if verify else "none",
            ssl_check_hostname=verify,
        )
        if retry is not None:
            client.set_retry(retry)
        return client

    def start(self) -> None:
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.config)], start_new_session=True)
        wait_for(self._pings, 15, f"redis-server on port {self.port}")

    def _pings(self) -> bool:
        return answers(self.client(retry=Retry(NoBackoff(), 0), verify=False), lambda c: c.ping())

    def stop(self) -> None:
        """Graceful shutdown: on SIGTERM Redis fsyncs the AOF before exiting.

        SIGTERM rather than the SHUTDOWN command: redis-py treats the closed connection
        as an error and retries it with backoff, which cost seconds per stop.
        """
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass(frozen=True)
class SentinelAcl:
    """ACL users of a Sentinel (instead of ``requirepass``): ``default`` off, an admin
    (the other Sentinels and the tests' inspection client) and the clients' user."""

    admin_user: str
    admin_password: str
    client_user: str
    client_password: str
    #: The client user's rule after ``on >password`` (commands, no keys or channels).
    client_rules: str

    def config(self) -> list[str]:
        return [
            "user default off resetpass nocommands",
            f"user {self.admin_user} on >{self.admin_password} ~* &* +@all",
            f"user {self.client_user} on >{self.client_password} {self.client_rules}",
            # How this Sentinel logs into the others (they have the same users).
            f"sentinel sentinel-user {self.admin_user}",
            f'sentinel sentinel-pass "{self.admin_password}"',
        ]


class SentinelServer:
    """One Redis Sentinel (``redis-server --sentinel``) watching *master*.

    Its clients log in with *password* (``requirepass``, the default user), or, with
    *acl*, as its client user. It logs into the master as the tests' admin user:
    Sentinel needs INFO, CLIENT, PUBLISH and SUBSCRIBE there (and REPLICAOF, CONFIG on
    a failover), which the role's app user is not given.
    """

    MASTER_NAME = "pxc-test"

    def __init__(
        self,
        workdir: Path,
        master: RedisServer,
        password: str,
        *,
        quorum: int = 1,
        down_after_ms: int = 2000,
        failover_timeout_ms: int | None = None,
        acl: SentinelAcl | None = None,
    ) -> None:
        self.workdir = workdir
        self.master = master
        self.password = password
        self.acl = acl
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "sentinel.conf"
        self.log = workdir / "sentinel.log"
        name = self.MASTER_NAME
        auth = acl.config() if acl is not None else [f'requirepass "{password}"']
        timeouts = [f"sentinel down-after-milliseconds {name} {down_after_ms}"]
        if failover_timeout_ms is not None:
            timeouts.append(f"sentinel failover-timeout {name} {failover_timeout_ms}")
        # A TLS master gets a TLS Sentinel: its clients and its link to the master too.
        listen = (
            [f"port {self.port}"]
            if master.tls is None
            else [*master.tls.redis_config(self.port), "tls-replication yes"]
        )
        self.config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    *listen,
                    f"dir {workdir}",
                    f"logfile {self.log}",
                    *auth,
                    f"sentinel monitor {name} 127.0.0.1 {master.port} {quorum}",
                    f"sentinel auth-user {name} {ADMIN_USER}",
                    f'sentinel auth-pass {name} "{master.password}"',
                    *timeouts,
                    "",
                ]
            )
        )
        self.config.chmod(0o600)

    def url(self, db: int) -> str:
        """The clients' URL: Sentinel's address, the master's user and password."""
        return (
            f"sentinel://{self.master.app_user}:{self.master.password}@127.0.0.1:{self.port}/{db}"
        )

    def env(self, storage: Path, broker_db: int, **overrides: str) -> dict[str, str]:
        tls = self.master.tls
        values = {
            "broker_url": self.url(broker_db),
            "result_backend": self.url(broker_db + 1),
            "sentinel_master_name": self.MASTER_NAME,
            "sentinel_password": self.password,
            **({} if tls is None else {"sentinel_tls": "true", "redis_ssl_ca_certs": str(tls.ca)}),
        }
        return settings_env(self.master, storage, **{**values, **overrides})

    def admin_client(self, retry: Retry | None = None) -> redis.Redis:
        """The tests' own client of this Sentinel (its admin user, or the password)."""
        user, password = (
            (self.acl.admin_user, self.acl.admin_password)
            if self.acl is not None
            else (None, self.password)
        )
        tls = self.master.tls
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=user,
            password=password,
            decode_responses=True,
            retry=retry or Retry(NoBackoff(), 0),
            ssl=tls is not None,
            ssl_ca_certs=None if tls is None else str(tls.ca),
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, str(self.config), "--sentinel"], start_new_session=True
        )
        wait_for(self._knows_master, 15, f"redis-sentinel on port {self.port}")

    def _knows_master(self) -> bool:
        return answers(self.admin_client(), lambda c: c.sentinel_masters())

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None


@contextlib.contextmanager
def watched_master(
    base: Path, password: str, tls: TlsFiles | None = None
) -> Iterator[SentinelServer]:
    """A master with the role's shipped profile (TLS with *tls*) and one Sentinel
    watching it, both running for the duration."""
    master = RedisServer(base / "master", password, tls=tls, shipped=True)
    master.start()
    watcher = SentinelServer(base / "sentinel", master, password + "-sentinel")
    try:
        watcher.start()
        yield watcher
    finally:
        watcher.stop()
        master.stop()


def settings_env(redis_server: RedisServer, storage: Path, **overrides: str) -> dict[str, str]:
    """A full process environment for pixcrawler code talking to *redis_server*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXCRAWLER_")}
    env.update(
        {
            "PIXCRAWLER_CELERY_BROKER_URL": redis_server.url(0),
            "PIXCRAWLER_CELERY_RESULT_BACKEND": redis_server.url(1),
            "PIXCRAWLER_CELERY_STORAGE_DIR": str(storage),
            "PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8",
            "PIXCRAWLER_CELERY_TASK_RETRY_BACKOFF": "0.2",
            "PIXCRAWLER_CELERY_TASK_RETRY_BACKOFF_MAX": "2",
            "PIXCRAWLER_CELERY_WORKER_CONCURRENCY": "2",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update({f"PIXCRAWLER_CELERY_{k.upper()}": v for k, v in overrides.items()})
    return env


class Worker:
    """A real ``celery worker`` subprocess, in its own process group."""

    _counter = 0

    def __init__(
        self,
        env: Mapping[str, str],
        queues: str = "crawl,validation,default,maintenance",
        *,
        logdir: Path,
        pool: str = "prefork",
        concurrency: int = 2,
        include: str | None = None,
        extra: tuple[str, ...] = (),
        app: str = "pixcrawler.celery_core.app",
        name: str | None = None,
    ) -> None:
        Worker._counter += 1
        self.name = name or f"w{Worker._counter}-{os.getpid()}@localhost"
        self.env = dict(env)
        self.logfile = logdir / f"worker-{Worker._counter}.log"
        self.cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queues,
            "-n",
            self.name,
            "-P",
            pool,
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
            *(["-I", include] if include else []),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Worker:
        log = self.logfile.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        if wait:
            wait_for(self._ready, 60, f"worker {self.name} to be ready (log: {self.logfile})")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log()[-2000:]}")
        return " ready." in self.log()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        """PIDs of the pool processes (prefork children)."""
        assert self.proc is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def stop(self, timeout: float = 60) -> int | None:
        """Warm shutdown (SIGTERM to the main process, as systemd's KillMode=mixed does)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the whole process group: main process and pool children die at once."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def client_app(env: dict[str, str]) -> Iterator[Celery]:
    """A Celery client for *env*'s DBs that leaves the shared app the current one."""
    # Imported here: conftest imports this module before it sets the environment that
    # the shared app is built from at import.
    from pixcrawler.celery_core.app import create_app, get_celery_app
    from pixcrawler.celery_core.config import load_settings

    app = create_app(load_settings(env))
    get_celery_app().set_current()
    try:
        yield app
    finally:
        app.close()


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        worker.kill()
