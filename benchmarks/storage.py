"""(e) The image store: crawl->validate chains with the local store and with S3, side by side.

Both rows run the recommended crawl and validation workers (cases.py) against the same
Redis and the same loopback image server (no delay: the store, not the download, is
what differs). The S3 row stores in a SeaweedFS ``weed server`` on loopback started
here, through the same code path a deployment uses (``PIXCRAWLER_CELERY_STORAGE_URL=
s3://...``). The clock runs from the first publish to the last validation result; the
memory columns are the peak of both workers' process trees, since the S3 client is
loaded in every crawl and validation process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from celery import chain

from benchmarks.batch import BatchResult
from benchmarks.cases import CRAWL_CASES, VALIDATION_CASES
from benchmarks.env import Bench
from benchmarks.procstats import MemorySampler, cpu_seconds
from pixcrawler.celery_core.config import ENV_PREFIX
from tests.support.seaweed import SeaweedServer

CRAWL_TASK = "builder.tasks.crawl_task"
VALIDATE_TASK = "validator.tasks.validate_task"
CRAWL_PROFILE = CRAWL_CASES[1].profile
VALIDATION_PROFILE = VALIDATION_CASES[1].profile


@dataclass(frozen=True)
class StoreCase:
    label: str
    #: Settings (without the prefix) that select the store.
    settings: dict[str, str]


@contextlib.contextmanager
def store_cases(bench: Bench) -> Iterator[list[StoreCase]]:
    """The local store and an S3 store in a loopback weed server, for one run."""
    with contextlib.ExitStack() as stack:
        server = SeaweedServer(bench.root / "seaweed")
        stack.callback(server.cleanup)
        server.start()
        s3 = {
            key.removeprefix(ENV_PREFIX): value
            for key, value in server.env("images", "bench", storage_s3_max_attempts="3").items()
        }
        yield [
            StoreCase("local store (file://)", {}),
            StoreCase("S3 store (SeaweedFS on loopback)", s3),
        ]


def _chains(bench: Bench, urls: list[str]) -> list[Any]:
    """Publish one crawl->validate chain per URL; the validation envelopes, in order."""
    app = bench.client_app(CRAWL_PROFILE)
    backend: Any = app.backend
    try:
        ids = [
            chain(app.signature(CRAWL_TASK, args=(url,)), app.signature(VALIDATE_TASK))
            .apply_async()
            .id
            for url in urls
        ]
        metas = dict(backend.get_many(ids, timeout=600, interval=0.01))
    finally:
        app.close()
    failed = [m for m in metas.values() if m["status"] != "SUCCESS"]
    if failed:
        raise RuntimeError(f"{len(failed)} chains failed, e.g. {failed[0]['result']!r}")
    envelopes = [metas[i]["result"] for i in ids]
    invalid = [e for e in envelopes if len(e["data"]["valid"]) != 1]
    if invalid:
        raise RuntimeError(f"{len(invalid)} images not validated, e.g. {invalid[0]['data']!r}")
    return envelopes


def run_store(
    bench: Bench, case: StoreCase, base: str, first: int, n: int, warm: int = 40
) -> BatchResult:
    """Chains for images first..first+warm+n; the first *warm* start every process."""
    bench.reset_redis()
    more = case.settings
    with (
        bench.workers(CRAWL_PROFILE, "crawl", **more) as crawlers,
        bench.workers(VALIDATION_PROFILE, "validation", **more) as validators,
    ):
        pids = [w.proc.pid for w in [*crawlers, *validators] if w.proc is not None]
        _chains(bench, [f"{base}/img/{i}.png" for i in range(first, first + warm)])
        urls = [f"{base}/img/{i}.png" for i in range(first + warm, first + warm + n)]
        cpu0 = cpu_seconds(pids)
        with MemorySampler(pids, interval=0.25) as memory:
            start = time.perf_counter()
            envelopes = _chains(bench, urls)
            seconds = time.perf_counter() - start
        worker_cpu = cpu_seconds(pids) - cpu0
    stored = envelopes[0]["data"]["valid"][0]
    expected = "s3://" if case.settings else "/"
    if not stored.startswith(expected):
        raise RuntimeError(f"{case.label}: image stored as {stored!r}")
    return BatchResult(
        label=case.label,
        profile=f"crawl: {CRAWL_PROFILE.describe()}; validation: {VALIDATION_PROFILE.describe()}",
        items=n,
        seconds=seconds,
        worker_cpu_s=worker_cpu,
        rss_kib=memory.peak.rss_kib,
        pss_kib=memory.peak.pss_kib,
        processes=memory.peak.processes,
    )
