"""A highly available broker on loopback: a master, its replicas and three Sentinels.

Every Redis node runs the role's shipped redis.conf and users.acl (``RedisServer(...,
shipped=True)``) plus the test's replication lines: each node may become a replica
after a failover, so each carries ``masteruser``/``masterauth`` (the tests' admin user,
which the role does not ship; the Ansible side provisions its own replication user).

The Sentinels run with ACL users instead of a shared password: ``default`` off, an
admin for the other Sentinels and the tests, and the clients' user with
:data:`SENTINEL_CLIENT_RULES`, the smallest command set that redis-py's Sentinel client
(kombu's transport, Celery's Sentinel result backend, Flower's broker view) and the
verification script's ``sentinel`` check need. tests/integration/test_sentinel_ha.py
proves it is enough: every client path runs as that user and the Sentinels' ACL LOG
stays empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from pixcrawler.verify_sentinel import reply_pairs
from tests.support.harness import (
    ADMIN_USER,
    RedisServer,
    SentinelAcl,
    SentinelServer,
    answers,
    settings_env,
    wait_for,
)

#: The clients' user on the Sentinels (PIXCRAWLER_CELERY_SENTINEL_USERNAME).
SENTINEL_CLIENT_USER = "pixcrawler"
#: What that user may run, found by running every client path as that user and reading
#: the Sentinels' ACL LOG, then dropping each rule in turn: SENTINEL MASTERS is what
#: redis-py's discover_master asks (kombu, Celery's result backend, Flower); the
#: verification adds MASTER, GET-MASTER-ADDR-BY-NAME, REPLICAS and CKQUORUM. AUTH and
#: HELLO need no rule (Redis runs them before any user is logged in). No keys, no
#: channels: a Sentinel holds no data, and no client here subscribes to its events.
SENTINEL_CLIENT_COMMANDS = (
    "sentinel|masters",
    "sentinel|master",
    "sentinel|get-master-addr-by-name",
    "sentinel|replicas",
    "sentinel|ckquorum",
)
SENTINEL_CLIENT_RULES = "resetchannels resetkeys -@all " + " ".join(
    f"+{command}" for command in SENTINEL_CLIENT_COMMANDS
)
SENTINEL_ADMIN_USER = "pixcrawler-test-sentinel-admin"


class SentinelSet:
    """A master with *replicas* replicas, watched by *sentinels* Sentinels (quorum 2)."""

    def __init__(
        self,
        base: Path,
        password: str,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        client_rules: str = SENTINEL_CLIENT_RULES,
    ) -> None:
        self.password = password
        self.client_password = password + "-sentinel-client"
        self.acl = SentinelAcl(
            admin_user=SENTINEL_ADMIN_USER,
            admin_password=password + "-sentinel-admin",
            client_user=SENTINEL_CLIENT_USER,
            client_password=self.client_password,
            client_rules=client_rules,
        )
        replication = [f"masteruser {ADMIN_USER}", f'masterauth "{password}"']
        first = RedisServer(base / "redis-0", password, shipped=True, extra=replication)
        self.nodes = [first] + [
            RedisServer(
                base / f"redis-{i}",
                password,
                shipped=True,
                extra=[*replication, f"replicaof 127.0.0.1 {first.port}"],
            )
            for i in range(1, replicas + 1)
        ]
        self.sentinels = [
            SentinelServer(
                base / f"sentinel-{i}",
                first,
                self.client_password,
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                acl=self.acl,
            )
            for i in range(sentinels)
        ]

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_settled(self.nodes[0].port)

    def stop(self) -> None:
        """Stop everything, each in turn even if one fails (nothing may outlive a test)."""
        for sentinel in self.sentinels:
            with contextlib.suppress(Exception):
                sentinel.stop()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    @contextlib.contextmanager
    def stopped(self, *sentinels: SentinelServer) -> Iterator[None]:
        """*sentinels* stopped for the block, started again after it."""
        for sentinel in sentinels:
            sentinel.stop()
        try:
            yield
        finally:
            for sentinel in sentinels:
                if sentinel.proc is None:
                    sentinel.start()

    # --- what clients are given -----------------------------------------------------------

    @property
    def master_name(self) -> str:
        return SentinelServer.MASTER_NAME

    def url(self, db: int) -> str:
        """Every Sentinel, ';'-joined, with the master's app user (as the role writes it)."""
        return ";".join(s.url(db) for s in self.sentinels)

    def env(self, storage: Path, broker_db: int, **overrides: str) -> dict[str, str]:
        values = {
            "broker_url": self.url(broker_db),
            "result_backend": self.url(broker_db + 1),
            "sentinel_master_name": self.master_name,
            "sentinel_username": SENTINEL_CLIENT_USER,
            "sentinel_password": self.client_password,
            **overrides,
        }
        return settings_env(self.nodes[0], storage, **values)

    # --- what the tests look at -----------------------------------------------------------

    def live_sentinels(self) -> list[SentinelServer]:
        return [s for s in self.sentinels if s.proc is not None]

    def master_port(self) -> int:
        """The master's port, as the first live Sentinel names it."""
        reply = _ask(self.live_sentinels()[0], "GET-MASTER-ADDR-BY-NAME", self.master_name)
        assert reply, "the Sentinel names no master"
        return int(reply[1])

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def master(self) -> RedisServer:
        return self.node(self.master_port())

    def failover(self) -> int:
        """``SENTINEL FAILOVER`` and wait until the set has settled on the new master.

        A Sentinel may abort a failover it started (``-failover-abort-...`` in its log:
        the replica it picked did not answer in time on a busy machine). That is the
        setup of the tests, not what they test, so an aborted failover is asked for
        once more; a failover that neither happens nor aborts fails with the logs.
        """
        old = self.master_port()
        for attempt in (1, 2):
            sizes = {s.log: s.log.stat().st_size for s in self.live_sentinels()}
            client = self.live_sentinels()[0].admin_client()
            try:
                client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "FAILOVER", self.master_name
                )
            finally:
                client.close()
            try:
                wait_for(lambda: self._agreed_master() not in (None, old), 30, "a new master")
                break
            except TimeoutError:
                logged = "\n".join(
                    f"{log}:\n{log.read_text()[size:][-3000:]}" for log, size in sizes.items()
                )
                if attempt == 2 or "failover-abort" not in logged:
                    raise TimeoutError(
                        f"no new master 30 s after SENTINEL FAILOVER; the Sentinels logged:\n"
                        f"{logged}"
                    ) from None
        new = self._agreed_master()
        assert new is not None
        # Not wait_settled: the Sentinels turn the old master into a replica only at
        # their next INFO of it, up to ten seconds later; tests that need every replica
        # linked call wait_settled themselves.
        wait_for(lambda: answers(self.node(new).client(), _is_master), 15, "the promotion")
        return new

    def _agreed_master(self) -> int | None:
        ports = set()
        for sentinel in self.live_sentinels():
            reply = _ask(sentinel, "GET-MASTER-ADDR-BY-NAME", self.master_name)
            if not reply:
                return None
            ports.add(int(reply[1]))
        return ports.pop() if len(ports) == 1 else None

    def wait_settled(self, master_port: int) -> None:
        """Every Sentinel names the master and knows every replica and Sentinel, and the
        master streams to every replica.

        Replica links are read from the master (``INFO replication``, live), not from
        the Sentinels, which refresh theirs only every ten seconds.
        """
        expected_replicas = len(self.nodes) - 1
        expected_sentinels = len(self.live_sentinels())

        def settled() -> bool:
            for sentinel in self.live_sentinels():
                reply = _ask(sentinel, "GET-MASTER-ADDR-BY-NAME", self.master_name)
                if not reply or int(reply[1]) != master_port:
                    return False
                replicas = _ask(sentinel, "REPLICAS", self.master_name) or []
                if len(replicas) != expected_replicas:
                    return False
                state = reply_pairs(_ask(sentinel, "MASTER", self.master_name) or [])
                if int(state.get("num-other-sentinels", -1)) != expected_sentinels - 1:
                    return False
            return answers(
                self.node(master_port).client(),
                lambda c: _online_replicas(c) == expected_replicas,
            )

        wait_for(settled, 60, f"the Sentinels to settle on master port {master_port}")

    def acl_log(self) -> list[dict[str, Any]]:
        """Every Sentinel's ACL LOG entries (what some client was refused)."""
        entries: list[dict[str, Any]] = []
        for sentinel in self.live_sentinels():
            client = sentinel.admin_client()
            try:
                entries += client.acl_log()
            finally:
                client.close()
        return entries

    def reset_acl_log(self) -> None:
        for sentinel in self.live_sentinels():
            client = sentinel.admin_client()
            try:
                client.acl_log_reset()
            finally:
                client.close()


def _ask(sentinel: SentinelServer, *args: str) -> Any:
    client = sentinel.admin_client()
    try:
        return client.execute_command("SENTINEL", *args)  # type: ignore[no-untyped-call]
    except redis.exceptions.RedisError:
        return None
    finally:
        client.close()


def _is_master(client: redis.Redis) -> bool:
    return bool(client.info("replication").get("role") == "master")


def _online_replicas(client: redis.Redis) -> int:
    """How many replicas a master streams to (0 if it is not a master)."""
    info = client.info("replication")
    if info.get("role") != "master":
        return 0
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
