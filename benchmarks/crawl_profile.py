"""Where a crawl's CPU goes per image: HTTP, hashing, storage, the rest; Celery by difference.

The crawl code (``crawl_one``: guard, GET, sniff, hash, store) runs here in one thread,
without Celery, against the loopback server with no delay, once plain (its CPU per image)
and once under cProfile with a CPU clock (its split). cProfile slows Python code more
than C code, so the split is given as shares and applied to the plain figure. What the
worker spends beyond the plain figure in a (c) row is Celery and the threads: task
messages, results and events, and the GIL handed between many threads.
"""

from __future__ import annotations

import cProfile
import pstats
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pixcrawler.celery_core.config import CelerySettings, load_settings

#: (category, file suffix, function): cumulative CPU of these calls is the category's.
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("HTTP (request, response, body: client.py)", "pixcrawler/builder/client.py", "get"),
    ("HTTP (request, response, body: client.py)", "pixcrawler/builder/client.py", "iter_bytes"),
    ("HTTP (request, response, body: client.py)", "pixcrawler/builder/client.py", "close"),
    ("hashing (SHA-256)", "~", "<method 'update' of '_hashlib.HASH' objects>"),
    ("hashing (SHA-256)", "~", "<method 'hexdigest' of '_hashlib.HASH' objects>"),
    ("storage (temp file, write, fsync, rename)", "pixcrawler/storage/local.py", "writer"),
    ("storage (temp file, write, fsync, rename)", "pixcrawler/storage/local.py", "_keep"),
    ("storage (temp file, write, fsync, rename)", "pixcrawler/storage/local.py", "commit"),
    ("address check (resolve, SSRF guard)", "pixcrawler/builder/fetch.py", "resolve_checked"),
)
REST = "the rest (URL parsing, sniffing, outcome)"


@dataclass
class CrawlProfile:
    images: int
    #: CPU per image of the crawl code alone, not profiled (ms).
    plain_ms: float
    #: Category -> share of the profiled CPU (0..1), REST included.
    shares: dict[str, float]
    #: (images/s, CPU ms per image) per round, many downloads in flight, no Celery.
    many: list[tuple[float, float]] = field(default_factory=list)
    #: Downloads in flight in that comparison.
    in_flight: int = 0

    def split_ms(self) -> dict[str, float]:
        return {name: share * self.plain_ms for name, share in self.shares.items()}


def _cumulative(stats: pstats.Stats, suffix: str, function: str) -> float:
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    return sum(
        value[3]
        for (filename, _line, name), value in raw.items()
        if name == function and filename.endswith(suffix)
    )


def _settings(storage: Path) -> CelerySettings:
    return load_settings(
        {
            "PIXCRAWLER_CELERY_STORAGE_DIR": str(storage),
            "PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def many_in_flight(
    base: str, storage: Path, first: int, tasks: int, per_task: int, rounds: int
) -> list[tuple[float, float]]:
    """(images/s, CPU ms per image) of *tasks* batch downloads at once in this process,
    once per round: the crawl code as a crawl worker runs it (run_batch,
    CRAWL_BATCH_CONCURRENCY at a time per task, one shared client) against *base* (the
    100 ms server), without Celery. Set beside the one-thread figure, it is the cost of
    many downloads taking turns in one process; beside the batch row, Celery's."""
    from pixcrawler.builder.batch import run_batch
    from pixcrawler.builder.tasks import crawl_one

    settings = _settings(storage)
    concurrency = settings.crawl_batch_concurrency
    out: list[tuple[float, float]] = []
    crawl_one(f"{base}/img/{first}.png", settings)  # the client and the store's directories
    first += 1
    for _ in range(rounds):
        urls = [f"{base}/img/{i}.png" for i in range(first, first + tasks * per_task)]
        first += tasks * per_task

        def batch(part: list[str]) -> int:
            done = run_batch(part, range(len(part)), lambda u: crawl_one(u, settings), concurrency)
            return sum(o["status"] == "ok" for o in done.values())

        cpu, start = _cpu(), time.perf_counter()
        with ThreadPoolExecutor(tasks) as executor:
            parts = [urls[i : i + per_task] for i in range(0, len(urls), per_task)]
            stored = sum(executor.map(batch, parts))
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        if stored != len(urls):
            raise RuntimeError(f"many in flight: {len(urls) - stored} images not stored")
        out.append((len(urls) / seconds, cpu * 1000 / len(urls)))
    return out


def profile_crawl(base: str, storage: Path, first: int, n: int) -> CrawlProfile:
    """Crawl *n* images twice from *base* (no delay), plain and profiled."""
    from pixcrawler.builder.tasks import crawl_one  # the app is built from these settings

    settings = _settings(storage)
    urls = [f"{base}/img/{i}.png" for i in range(first, first + 2 * n + 1)]

    def crawl(batch: list[str]) -> None:
        for url in batch:
            outcome = crawl_one(url, settings)
            if outcome["status"] != "ok":
                raise RuntimeError(f"crawl profile: {outcome!r}")

    crawl(urls[:1])  # the HTTP client and the store's directories
    start = time.process_time()
    crawl(urls[1 : n + 1])
    plain = (time.process_time() - start) * 1000 / n
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(crawl, urls[n + 1 :])
    stats = pstats.Stats(profiler)
    total = _cumulative(stats, "benchmarks/crawl_profile.py", "crawl")
    shares: dict[str, float] = {}
    for name, suffix, function in CATEGORIES:
        shares[name] = shares.get(name, 0.0) + _cumulative(stats, suffix, function) / total
    shares[REST] = max(0.0, 1.0 - sum(shares.values()))
    return CrawlProfile(images=n, plain_ms=plain, shares=shares)
