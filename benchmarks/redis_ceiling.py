"""(b) ``redis-benchmark`` on the same server: what Redis alone can do (the ceiling).

``redis-benchmark`` only takes a password on its command line, where ``ps`` shows it. So
it never gets the server's real password: it runs as a throwaway ACL user with its own
random password, created just before and deleted just after, limited to benchmark keys
in database 9. That password is visible in ``ps`` for the seconds the run lasts; on a
benchmark server bound to loopback that is acceptable, and it opens nothing afterwards.
"""

from __future__ import annotations

import csv
import io
import secrets
import shutil
import subprocess

from benchmarks.env import Bench

TESTS = "set,lpush,rpop"
USER = "redis-benchmark"


def redis_benchmark(bench: Bench, requests: int = 100_000, clients: int = 50) -> dict[str, float]:
    """requests/s per test (SET, LPUSH, RPOP), 50 clients, no pipelining."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark is not installed (it ships with redis-tools)")
    client = bench.redis.client()
    password = secrets.token_hex(16)
    # Keys redis-benchmark uses for these tests: key:*, mylist*, counter*; CONFIG for setup.
    client.acl_setuser(
        USER,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["key:*", "mylist*", "counter*"],
        commands=["+@all", "-@dangerous", "+config|get", "+select", "+ping"],
        reset=True,
    )
    try:
        out = subprocess.run(
            [
                exe,
                "-h",
                "127.0.0.1",
                "-p",
                str(bench.redis.port),
                "--user",
                USER,
                "-a",
                password,
                "--dbnum",
                "9",
                "-n",
                str(requests),
                "-c",
                str(clients),
                "-t",
                TESTS,
                "--csv",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    finally:
        client.acl_deluser(USER)
        bench.redis.client(9).flushdb()
    rows = list(csv.reader(io.StringIO(out)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}
