"""Run one batch of real tasks through real workers and time it, for (c) and (d).

The clock starts before the first publish and stops when the last result is in Redis, so
publishing, queueing, the work and result storage are all inside the figure. Worker start
and a warm-up batch are outside it: pool processes import lazily and open connections on
first use, and a worker is started once per deployment, not per task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.env import Bench, Profile
from benchmarks.procstats import MemorySampler, cpu_seconds


@dataclass
class BatchResult:
    label: str
    profile: str
    items: int
    seconds: float
    worker_cpu_s: float
    rss_kib: int
    pss_kib: int
    processes: int
    #: The per-site row's server counts (polite.py): the most in flight at one site, and
    #: the limit it was held to.
    site_most: int | None = None
    site_limit: int | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def send_and_collect(
    bench: Bench, profile: Profile, task: str, payloads: list[Any], timeout: float = 300
) -> list[Any]:
    """Publish every payload with one producer and return the envelopes in order."""
    app = bench.client_app(profile)
    backend: Any = app.backend
    try:
        with app.producer_or_acquire() as producer:
            ids = [app.send_task(task, (p,), producer=producer).id for p in payloads]
        metas = dict(backend.get_many(ids, timeout=timeout, interval=0.01))
    finally:
        app.close()
    failed = [m for m in metas.values() if m["status"] != "SUCCESS"]
    if failed:
        raise RuntimeError(f"{task}: {len(failed)} tasks failed, e.g. {failed[0]['result']!r}")
    return [metas[i]["result"] for i in ids]


def run_batch(
    bench: Bench,
    profile: Profile,
    *,
    queue: str,
    task: str,
    warmup: list[Any],
    payloads: list[Any],
    check: Callable[[list[Any]], None],
    label: str,
    items: int | None = None,
) -> BatchResult:
    """Time *payloads* through the profile's workers; *check* validates the envelopes.

    *items* counts what the rate is per (images in batches of several per task); by
    default one per payload.
    """
    bench.reset_redis()
    with bench.workers(profile, queue) as workers:
        pids = [w.proc.pid for w in workers if w.proc is not None]
        check(send_and_collect(bench, profile, task, warmup))
        cpu0 = cpu_seconds(pids)
        with MemorySampler(pids, interval=0.25) as memory:
            start = time.perf_counter()
            envelopes = send_and_collect(bench, profile, task, payloads)
            seconds = time.perf_counter() - start
        worker_cpu = cpu_seconds(pids) - cpu0
    check(envelopes)
    return BatchResult(
        label=label,
        profile=profile.describe(),
        items=len(payloads) if items is None else items,
        seconds=seconds,
        worker_cpu_s=worker_cpu,
        rss_kib=memory.peak.rss_kib,
        pss_kib=memory.peak.pss_kib,
        processes=memory.peak.processes,
    )
