"""(a) End-to-end throughput of a trivial task with a result: publish N, collect N.

Latency is publish time (client clock) to the envelope's ``finished_at`` (worker clock,
same host), so it does not depend on how the client collects. In a burst it is mostly
queueing; the idle round trip (one task at a time, publish to result in hand) is
measured separately.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from celery.result import AsyncResult, ResultSet

from benchmarks.bench_tasks import NOOP
from benchmarks.env import Bench, Profile
from benchmarks.procstats import MemorySampler, cpu_seconds

#: Commands worth naming in the "where the time goes" table.
RESULT_KEY = "celery-task-meta-{}"


@dataclass
class ClientStyle:
    """How the client publishes and collects."""

    label: str
    #: One producer (and its connection) for the whole burst instead of one per call.
    reuse_producer: bool
    #: "get": ``AsyncResult.get`` per task; "native": ``ResultSet.join_native``;
    #: "poll": ``backend.get_many`` (MGET in batches).
    collect: str


SEED_CLIENT = ClientStyle("delay() per task, get() per result", False, "get")
OUR_CLIENT = ClientStyle("one producer, get_many() (MGET)", True, "poll")


@dataclass
class ThroughputResult:
    label: str
    profile: str
    client: str
    tasks: int
    seconds: float
    publish_seconds: float
    latencies_ms: list[float]
    idle_rtt_ms: list[float]
    worker_cpu_s: float
    client_cpu_s: float
    redis_cpu_s: float
    rss_kib: int
    pss_kib: int
    processes: int
    commands: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    def pct(self, values: list[float], q: int) -> float:
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def publish(app: Celery, n: int, reuse_producer: bool, offset: int = 0) -> list[tuple[str, float]]:
    sent: list[tuple[str, float]] = []
    if reuse_producer:
        with app.producer_or_acquire() as producer:
            for i in range(n):
                t = time.time()
                sent.append((app.send_task(NOOP, (offset + i,), producer=producer).id, t))
    else:
        for i in range(n):
            t = time.time()
            sent.append((app.send_task(NOOP, (offset + i,)).id, t))
    return sent


def collect(app: Celery, ids: list[str], how: str, timeout: float) -> list[Any]:
    """Every task's return value, in *ids* order; raise if any task did not succeed."""
    if how == "poll":
        backend: Any = app.backend
        metas = dict(backend.get_many(ids, timeout=timeout, interval=0.005))
        bad = [m for m in metas.values() if m["status"] != "SUCCESS"]
        if bad:
            raise RuntimeError(f"{len(bad)} tasks did not succeed, e.g. {bad[0]['status']}")
        return [metas[i]["result"] for i in ids]
    results: list[AsyncResult[Any]] = [AsyncResult(task_id, app=app) for task_id in ids]
    if how == "native":
        return list(ResultSet(results, app=app).join_native(timeout=timeout, propagate=True))
    return [r.get(timeout=timeout, propagate=True) for r in results]


def _finished(envelope: Any) -> float:
    return datetime.fromisoformat(envelope["finished_at"]).timestamp()


def _redis_cpu(bench: Bench) -> float:
    info = bench.redis.client().info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _commandstats(bench: Bench) -> dict[str, int]:
    stats = bench.redis.client().info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def idle_round_trips(app: Celery, count: int, reuse_producer: bool) -> list[float]:
    """One task at a time: publish, wait for its result (what one waiting caller sees)."""
    out = []
    for i in range(count):
        start = time.perf_counter()
        if reuse_producer:
            with app.producer_or_acquire() as producer:
                result = app.send_task(NOOP, (i,), producer=producer)
        else:
            result = app.send_task(NOOP, (i,))
        result.get(timeout=30)
        out.append((time.perf_counter() - start) * 1000)
    return out


def run_throughput(
    bench: Bench, profile: Profile, client: ClientStyle, n: int, rtt: int, label: str
) -> ThroughputResult:
    bench.reset_redis()
    with (
        bench.workers(profile, "default", include="benchmarks.bench_tasks") as workers,
    ):
        pids = [w.proc.pid for w in workers if w.proc is not None]
        app = bench.client_app(profile)
        try:
            # Warm-up: pool processes import lazily, connections open on first use.
            warm = publish(app, 50, client.reuse_producer)
            collect(app, [i for i, _ in warm], client.collect, 60)
            idle = idle_round_trips(app, rtt, client.reuse_producer)
            bench.redis.client().config_resetstat()
            cpu0, redis0, client0 = cpu_seconds(pids), _redis_cpu(bench), time.process_time()
            with MemorySampler(pids) as memory:
                start = time.perf_counter()
                sent = publish(app, n, client.reuse_producer, offset=1000)
                publish_seconds = time.perf_counter() - start
                envelopes = collect(app, [i for i, _ in sent], client.collect, 300)
                seconds = time.perf_counter() - start
            worker_cpu = cpu_seconds(pids) - cpu0
            client_cpu = time.process_time() - client0
            redis_cpu = _redis_cpu(bench) - redis0
            commands = _commandstats(bench)
        finally:
            app.close()
    if [e["data"] for e in envelopes] != [1000 + i for i in range(n)]:
        raise RuntimeError(f"{label}: results do not match the published arguments")
    latencies = [(_finished(e) - t) * 1000 for e, (_, t) in zip(envelopes, sent, strict=True)]
    return ThroughputResult(
        label=label,
        profile=profile.describe(),
        client=client.label,
        tasks=n,
        seconds=seconds,
        publish_seconds=publish_seconds,
        latencies_ms=latencies,
        idle_rtt_ms=idle,
        worker_cpu_s=worker_cpu,
        client_cpu_s=client_cpu,
        redis_cpu_s=redis_cpu,
        rss_kib=memory.peak.rss_kib,
        pss_kib=memory.peak.pss_kib,
        processes=memory.peak.processes,
        commands=commands,
    )


def declare_queues(app: Celery) -> None:
    """Create the exchange bindings a worker would, so publishing works with no worker."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in app.amqp.queues.values():
            queue.bind(channel).declare()


def publish_only(bench: Bench, profile: Profile, client: ClientStyle, n: int) -> float:
    """Client publish rate with no worker consuming (tasks/s); the queue is emptied after."""
    bench.reset_redis()
    app = bench.client_app(profile)
    try:
        declare_queues(app)
        publish(app, 20, client.reuse_producer)
        start = time.perf_counter()
        publish(app, n, client.reuse_producer)
        seconds = time.perf_counter() - start
    finally:
        app.close()
    bench.reset_redis()
    return n / seconds
