"""The prose of docs/BENCHMARKS.md, written from this run's figures.

Kept apart from report.py so the renderer stays readable. A sentence that states a
number takes it from :class:`Figures` (measured in this run, or a setting the rows ran
with); the fixed texts state no measured number. The targets quoted (5x and 10x the seed
for batch crawls, 90 % of Pillow's ceiling for batch validation) are issue 15's goals,
and each is reported as met or missed by this run's figures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchmarks.crawl_profile import CrawlProfile
from benchmarks.deployed import deployed
from pixcrawler.celery_core.config import CelerySettings

#: Issue 15's goals.
CRAWL_TARGET = 5.0
CRAWL_STRETCH = 10.0
VALIDATION_TARGET = 0.9

NAN = float("nan")


def batch_concurrency() -> int:
    """CRAWL_BATCH_CONCURRENCY as the deployed crawl worker has it."""
    value = deployed("crawl").settings.get("CRAWL_BATCH_CONCURRENCY")
    default = CelerySettings.model_fields["crawl_batch_concurrency"].default
    return int(value) if value is not None else int(default)


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _polite_summary(f: Figures) -> list[str]:
    if f.polite is None:
        return []
    label, rate, most, limit = f.polite
    ratio = rate / f.crawl_rate[f.crawl_labels[0]]
    return [
        f"- **(c) {label}:** {rate:.1f} images/s (**{ratio:.1f}x** the seed); the sites "
        f"counted at most {most} requests in flight at one site (limit {limit}). Target: "
        f"the limit holds, {_met(most <= limit)}; {CRAWL_TARGET:.0f}x the seed, "
        f"{_met(ratio >= CRAWL_TARGET)}."
    ]


@dataclass
class Figures:
    nproc: int
    delay_ms: float
    #: (a): label -> median tasks/s; CPU ms per task (worker, client, Redis); peak RSS MiB.
    throughput: dict[str, float]
    cpu: dict[str, tuple[float, float, float]]
    rss: dict[str, float]
    #: (a), first round: label -> command -> calls per task.
    commands: dict[str, dict[str, float]]
    redis_rps: float
    #: (c): label -> median images/s, worker CPU ms per image, peak RSS MiB.
    crawl_rate: dict[str, float]
    crawl_cpu: dict[str, float]
    crawl_rss: dict[str, float]
    #: seed one URL per task, deployed one URL per task, deployed batches.
    crawl_labels: tuple[str, str, str]
    crawl_in_flight: dict[str, int]
    crawl_processes: dict[str, int]
    #: Prefork children of the seed's worker.
    seed_processes: int
    crawl_per_task: int
    crawl_profile: CrawlProfile | None
    #: The per-site row (polite.py): label, median images/s, the most any site had in
    #: flight over all rounds, and the limit.
    polite: tuple[str, float, int, int] | None
    validation_rate: dict[str, float]
    validation_cpu: dict[str, float]
    validation_rss: dict[str, float]
    #: seed one path per task, deployed one path per task, deployed batches.
    validation_labels: tuple[str, str, str]
    validation_per_task: int
    #: Median of every ceiling measured; its decoding CPU per image (ms).
    ceiling: float
    ceiling_cpu: float
    #: Per round: the batch row's rate over the mean of the ceilings just before and after.
    batch_shares: list[float]

    @property
    def batch_share(self) -> float:
        return statistics.median(self.batch_shares) if self.batch_shares else NAN

    def total_cpu(self, label: str) -> float:
        return sum(self.cpu.get(label, (NAN, NAN, NAN)))


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


DEPLOYED_INTRO = """\
Read by benchmarks/deployed.py from the role itself, not copied: the per-queue settings
are the workers role's defaults (`pixcrawler_workers_fallback` combined with
`pixcrawler_workers_queue_defaults`, as its tasks combine them) rendered through its
`worker.env.j2`; the command line is the `ExecStart=` of `systemd/pixcrawler-worker@.service`
(installed verbatim) with those values filled in; events, client reuse and requeue on
restart are the package's defaults under the prod environment's `pixcrawler_settings`
(env/prod.yml), which is what pixcrawler.env carries; the role starts one unit per queue
per host; validation's concurrency is the host's vCPU count, here this machine's.
tests/unit/test_benchmark_rows.py fails when a row drifts from this. The deployed rows run
that command line as it is (this venv's celery, a unique node name; the (a) row adds `-I
benchmarks.bench_tasks` for its no-op task)."""


def summary(f: Figures) -> str:
    seed, ours = f.throughput.get("seed", NAN), f.throughput.get("deployed", NAN)
    cs, c1, cb = f.crawl_labels
    vs, v1, vb = f.validation_labels
    crawl_ratio = f.crawl_rate[cb] / f.crawl_rate[cs]
    val_share = f.batch_share
    lines = [
        f"- **(a) `default` queue, trivial task:** seed settings {seed:.0f} tasks/s, "
        f"deployed {ours:.0f} tasks/s (**{ours / seed:.1f}x**), "
        f"{f.total_cpu('deployed'):.2f} ms of CPU per task (worker + client + Redis) "
        f"against the seed's {f.total_cpu('seed'):.2f}.",
        f"- **(c) crawl, {f.delay_ms:.0f} ms per image:** {cs} {f.crawl_rate[cs]:.1f} "
        f"images/s; {c1} {f.crawl_rate[c1]:.1f} "
        f"(**{f.crawl_rate[c1] / f.crawl_rate[cs]:.1f}x**); {cb} {f.crawl_rate[cb]:.1f} "
        f"(**{crawl_ratio:.1f}x**) at {f.crawl_cpu[cb]:.2f} ms of worker CPU per image and "
        f"{f.crawl_rss[cb]:,.0f} MiB peak RSS (seed {f.crawl_rss[cs]:,.0f}). Target "
        f"{CRAWL_TARGET:.0f}x the seed at no more memory: {_met(crawl_ratio >= CRAWL_TARGET)}"
        f" on throughput, {_met(f.crawl_rss[cb] <= f.crawl_rss[cs])} on memory; stretch "
        f"{CRAWL_STRETCH:.0f}x: {_met(crawl_ratio >= CRAWL_STRETCH)}. The seed suffers "
        "most from the other jobs' load; from this run's CPU per image and downloads in "
        f"flight, an idle machine would allow at most {crawl_bound(f, cs):,.0f} images/s "
        f"for the seed and {crawl_bound(f, cb):,.0f} for batches, "
        f"{crawl_bound(f, cb) / crawl_bound(f, cs):.1f}x ((c) below).",
        *_polite_summary(f),
        f"- **(d) validation:** Pillow alone on all cores {f.ceiling:.1f} images/s (the "
        f"ceiling); {vs} {f.validation_rate[vs]:.1f} "
        f"({100 * f.validation_rate[vs] / f.ceiling:.0f}% of it); {v1} "
        f"{f.validation_rate[v1]:.1f} ({100 * f.validation_rate[v1] / f.ceiling:.0f}%); "
        f"{vb} {f.validation_rate[vb]:.1f}, and against the ceilings measured just before "
        f"and after it in each round **{100 * val_share:.1f}%** (median of "
        f"{', '.join(f'{100 * x:.1f}%' for x in f.batch_shares)}). Target "
        f"{100 * VALIDATION_TARGET:.0f}% of the ceiling for batches: "
        f"{_met(val_share >= VALIDATION_TARGET)}.",
    ]
    return "\n".join(lines)


THROUGHPUT_INTRO = """\
The task is `bench.noop` (benchmarks/bench_tasks.py): a `BaseTask` that returns its
argument, so the result envelope, logging and retry wrapper are all paid; it routes to
the `default` queue. The client publishes N tasks, then collects N results, and checks
every result matches its argument. *Burst latency* is publish time to the envelope's
`finished_at` (so it includes waiting in the queue behind the burst); *idle round trip*
is one task at a time, publish to result in hand. acks_late and results are on in every
row. The "deployed, ..." variants change one setting of the deployed row; the
alternative is not what the role installs (it would need one unit per core)."""


def where_time_goes(f: Figures) -> str:
    seed_w = f.cpu.get("seed", (NAN,) * 3)[0]
    ours_w = f.cpu.get("deployed", (NAN,) * 3)[0]
    cmd = f.commands
    events_off = "deployed, events off"
    no_reuse = "deployed, no client reuse"
    solo = next((label for label in f.throughput if label.startswith("alternative")), "")
    total = f.total_cpu("deployed")
    per_task_cmds = sum(cmd.get("deployed", {}).values())
    lines = [
        "What the tables above show, row against row:",
        "",
        f"- **The prefork parent.** The seed's {f.seed_processes} prefork children cost "
        f"{seed_w:.2f} ms of "
        f"worker CPU per task against the deployed threads pool's {ours_w:.2f}, and "
        f"{f.rss.get('seed', NAN):,.0f} MiB peak RSS against {f.rss.get('deployed', NAN):,.0f}: "
        "the parent alone does the broker I/O and hands each task to a child through a "
        "pipe, so more children add memory, not consumers.",
        f"- **`track_started`** (on in the seed) costs a result write per task: SETEX "
        f"{cmd.get('seed', {}).get('setex', NAN):.2f} per task in the seed row against "
        f"{cmd.get('deployed', {}).get('setex', NAN):.2f} deployed.",
        f"- **Events** (Flower): PUBLISH {cmd.get('deployed', {}).get('publish', NAN):.2f} "
        f"per task with events on, {cmd.get(events_off, {}).get('publish', NAN):.2f} with "
        f"them off; CPU per task (all three parts) {total:.2f} ms against "
        f"{f.total_cpu(events_off):.2f}, {f.throughput.get('deployed', NAN):.0f} tasks/s "
        f"against {f.throughput.get(events_off, NAN):.0f}.",
        f"- **Client reuse** (transport.py, on in the deployed row): worker + client CPU "
        f"per task {sum(f.cpu.get('deployed', (NAN,) * 3)[:2]):.2f} ms with it, "
        f"{sum(f.cpu.get(no_reuse, (NAN,) * 3)[:2]):.2f} ms without; "
        f"{f.throughput.get('deployed', NAN):.0f} against "
        f"{f.throughput.get(no_reuse, NAN):.0f} tasks/s.",
        f"- **Redis is not the limit:** {f.cpu.get('deployed', (NAN,) * 3)[2]:.2f} ms of "
        f"its CPU per task in the deployed row, {per_task_cmds:.1f} commands per task, "
        f"and (b) shows it serving at least {f.redis_rps:,.0f} single commands per "
        "second.",
        f"- **The bound:** on {f.nproc} cores every process (client, workers, Redis, "
        f"other jobs) shares the CPU, so {f.nproc} cores / {total:.2f} ms per task = "
        f"{f.nproc * 1000 / total:,.0f} tasks/s is what the deployed row could reach on "
        f"an idle machine; it measured {f.throughput.get('deployed', NAN):.0f}.",
    ]
    if solo:
        lines.append(
            f"- **{solo}** (not deployed): {f.throughput[solo]:.0f} tasks/s at "
            f"{f.total_cpu(solo):.2f} ms CPU per task and {f.rss[solo]:,.0f} MiB peak RSS."
        )
    return "\n".join(lines)


REDIS_BENCHMARK_NOTE = """\
`redis-benchmark` takes a password only on its command line, where `ps` shows it. It
therefore never gets the server's real password: it runs as a throwaway ACL user with
its own random password, allowed only the benchmark's keys in database 9, created just
before the run and deleted just after. That throwaway password is visible in `ps` for
the seconds the run lasts, which is acceptable for a benchmark server bound to loopback;
the password the workers use never appears on any command line. LPUSH and RPOP pay for
AOF (`appendfsync everysec`) as the broker does."""


def crawl_intro(f: Figures, images: int) -> str:
    return (
        f"`builder.tasks.crawl_task` over {images} distinct 48x48 PNGs per row from a "
        f"loopback HTTP server in its own process that sleeps {f.delay_ms:.0f} ms before "
        "answering each (and sends each response in one write with TCP_NODELAY, so no "
        "delayed ACK is added); every image is downloaded, sniffed, hashed, fsynced and "
        f"stored. The first two rows send one URL per task (as the seed does), the last "
        f"{f.crawl_per_task} URLs per task (what a dataset build sends), which the task "
        f"downloads {batch_concurrency()} at a time (`CRAWL_BATCH_CONCURRENCY`). "
        "`PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS=127.0.0.0/8`. Politeness is on when "
        "deployed; at one site it would measure the site limit, not the crawler, so the "
        "deployed one-site rows exempt their server (`CRAWL_EXEMPT_HOSTS=127.0.0.1`, as an "
        "operator exempts a source it owns) and the per-site row (benchmarks/polite.py) "
        "spreads the images over 50 sites with the limits on."
    )


def crawl_bound(f: Figures, label: str) -> float:
    """The lower of a crawl row's two bounds (images/s): downloads in flight, CPU."""
    cores = min(f.nproc, f.crawl_processes[label])
    return min(f.crawl_in_flight[label] * 1000 / f.delay_ms, cores * 1000 / f.crawl_cpu[label])


def _crawl_bound(f: Figures, label: str) -> str:
    in_flight = f.crawl_in_flight[label]
    cores = min(f.nproc, f.crawl_processes[label])
    cpu = f.crawl_cpu[label]
    return (
        f"- {label}: {in_flight} downloads in flight at most, so at most "
        f"{in_flight * 1000 / f.delay_ms:,.0f} images/s from waiting alone; "
        f"{f.crawl_processes[label]} process(es) on {f.nproc} cores can use {cores} "
        f"core(s), so at {cpu:.2f} ms of CPU per image at most "
        f"{cores * 1000 / cpu:,.0f} images/s; measured {f.crawl_rate[label]:.1f}."
    )


def crawl_note(f: Figures) -> str:
    cs, c1, cb = f.crawl_labels
    ratio = f.crawl_rate[cb] / f.crawl_rate[cs]
    needed = f.crawl_rate[cs] * CRAWL_TARGET
    stretch = f.crawl_rate[cs] * CRAWL_STRETCH
    waiting = f.crawl_in_flight[cb] * 1000 / f.delay_ms
    cores = min(f.nproc, f.crawl_processes[cb])
    cpu_bound = cores * 1000 / f.crawl_cpu[cb]
    limit = "the CPU" if cpu_bound < waiting else "the downloads in flight"
    seed_bound = crawl_bound(f, cs)
    lines = [
        "Each row is bounded twice, by the downloads it keeps in flight and by its CPU "
        "(a process's Python work holds the GIL, so one process uses one core at most):",
        "",
        _crawl_bound(f, cs),
        _crawl_bound(f, c1),
        _crawl_bound(f, cb),
        "",
        f"The batch row reached {ratio:.1f}x the seed ({CRAWL_TARGET:.0f}x would be "
        f"{needed:,.0f} images/s, {CRAWL_STRETCH:.0f}x {stretch:,.0f}); of its two bounds, "
        f"{waiting:,.0f} from waiting and {cpu_bound:,.0f} from CPU, the lower is "
        f"{limit}. {CRAWL_STRETCH:.0f}x needs at most "
        f"{cores * 1000 / stretch:.2f} ms of CPU per image in {cores} process(es), or "
        f"{f.nproc * 1000 / stretch:.2f} ms with every core busy. The seed reached "
        f"{100 * f.crawl_rate[cs] / seed_bound:.0f}% of the lower of its own two bounds "
        f"(its {f.seed_processes} processes share the cores with the other jobs), so the "
        "ratios to the seed move with the load (load averages above). The deployed crawl "
        f"runs {f.crawl_processes[cb]} threads worker(s) on this {f.nproc}-core machine "
        "(one per core), so the CPU per image is the figure that decides; the next "
        "table shows where it goes. Time limits: the threads pool does not enforce "
        "`task_time_limit`; the crawl code bounds each download itself (connect/read "
        "timeouts and `CRAWL_TOTAL_TIMEOUT`).",
    ]
    return "\n".join(lines)


def crawl_profile_table(f: Figures) -> list[str]:
    p = f.crawl_profile
    assert p is not None
    _, c1, cb = f.crawl_labels
    lines = ["| part | CPU ms per image | share |", "|---|---:|---:|"]
    for name, ms in sorted(p.split_ms().items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {ms:.3f} | {100 * p.shares[name]:.0f}% |")
    lines.append(f"| **the crawl code alone, one thread** | **{p.plain_ms:.2f}** | 100% |")
    many = _med([cpu for _, cpu in p.many]) if p.many else None
    if many is not None:
        lines.append(
            f"| one worker process's share of the batch row, {p.in_flight} downloads in "
            "flight, no Celery "
            f"({many:.2f} - {p.plain_ms:.2f}) | {many - p.plain_ms:.2f} | |"
        )
    base, what = (many, "Celery") if many is not None else (p.plain_ms, "Celery and threads")
    for label in (c1, cb):
        extra = f.crawl_cpu[label] - base
        lines.append(
            f"| {what} in row *{label}* ({f.crawl_cpu[label]:.2f} - {base:.2f}) | {extra:.2f} | |"
        )
    return lines


def crawl_profile_note(f: Figures) -> str:
    p = f.crawl_profile
    assert p is not None
    cb = f.crawl_labels[2]
    top, top_ms = max(p.split_ms().items(), key=lambda kv: kv[1])
    batch_extra = f.crawl_cpu[cb] - p.plain_ms
    text = (
        f"Measured by benchmarks/crawl_profile.py: `crawl_one` (what a crawl task runs "
        f"per URL) over {p.images} images in one thread without Celery, against the same "
        "server with no delay; the split comes from cProfile on a CPU clock, applied as "
        f"shares to the unprofiled figure. The largest part is {top} at {top_ms:.2f} ms "
        "per image. "
    )
    if batch_extra > 0.05 * p.plain_ms:
        text += (
            f"In the batch row the worker spent {batch_extra:.2f} ms per image beyond the "
            f"crawl code alone in one thread: Celery's per-task work, shared by "
            f"{f.crawl_per_task} images there, and running many downloads at once in one "
            "process (threads taking turns at the GIL)."
        )
    else:
        text += (
            f"In the batch row the worker spent {f.crawl_cpu[cb]:.2f} ms per image, as "
            f"much as the crawl code alone in one thread ({p.plain_ms:.2f}; the two were "
            "measured minutes apart under a changing load): Celery's per-task work, "
            f"shared by {f.crawl_per_task} images, no longer shows."
        )
    if p.many:
        text += (
            " Side by side, the crawl code as one of the batch row's worker processes runs "
            f"its share ({p.in_flight} downloads in flight, the {f.delay_ms:.0f} ms server, "
            "no Celery) "
            f"fetched {_med([r for r, _ in p.many]):,.0f} images/s (rounds: "
            f"{', '.join(f'{r:,.0f}' for r, _ in p.many)}) at "
            f"{_med([c for _, c in p.many]):.2f} ms of CPU per image."
        )
    return text


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else NAN


def validation_intro(f: Figures) -> str:
    return (
        "`validator.tasks.validate_task` over distinct 1024x768 JPEGs in the store: one "
        f"path per task, and lists of {f.validation_per_task} (what a crawl of "
        f"{f.validation_per_task} URLs hands the validate task chained to it). The ceiling "
        "runs `inspect_image` (the same header checks, `verify()` and full `load()` the "
        f"task does) on {f.nproc} processes with `multiprocessing`, with no Celery or Redis, "
        f"just before and just after the batch row in each of its {len(f.batch_shares)} "
        "rounds."
    )


def validation_note(f: Figures) -> str:
    _, v1, vb = f.validation_labels
    share = f.batch_share
    per_task = f.validation_cpu[v1] - f.validation_cpu[vb]
    return (
        "A list is validated file by file in one task, each file's outcome kept "
        "(a bad file is an `invalid` outcome, not a failure of the list), and the "
        "duplicate registry is asked once per list (one Redis pipeline) instead of once "
        f"per file. The worker's CPU per image was {f.validation_cpu[v1]:.2f} ms with one "
        f"path per task and {f.validation_cpu[vb]:.2f} ms in lists, against "
        f"{f.ceiling_cpu:.2f} ms for Pillow alone: {per_task:.2f} ms per task of "
        "messages, results, events and the pipe to the prefork child, paid once per list. "
        "The load on this shared machine moves between rounds, so the batch row runs "
        "between two ceiling measurements, back to back, and its share is taken per "
        f"round: {100 * share:.1f}% (target {100 * VALIDATION_TARGET:.0f}%: "
        f"{_met(share >= VALIDATION_TARGET)}); by CPU per image, Pillow alone over the "
        f"batch row, {100 * f.ceiling_cpu / f.validation_cpu[vb]:.0f}%. The deployed "
        f"worker is one prefork unit with {deployed('validation').concurrency} children: "
        "prefork because untrusted images are decoded (the child is where the hard time "
        "limit is enforced, and a crashing decoder takes down a child, not the consumer)."
    )


STORAGE_NOTE = """\
Each chain is two tasks; with S3 the crawl adds a HEAD and a PUT per image and the
validation a GET, all on loopback, where a real object store adds its network round
trips. The S3 client is obstore (why: README, "Image storage"); the memory column shows
what it adds to every crawl and validation process. SeaweedFS's own CPU and memory are not
in the worker columns: it is the object store, a separate service, as Redis is."""


def patch_note(f: Figures) -> str:
    cmd = f.commands.get("deployed", {})
    return (
        "`pixcrawler/celery_core/transport.py`, on by default and switched by "
        "`PIXCRAWLER_CELERY_REDIS_CLIENT_REUSE`: kombu would build a new `redis.Redis` "
        "for every command it sends; the transport keeps one per kombu pool. It is a "
        "transport subclass selected by `broker_transport`, a supported Celery setting, "
        "rather than a monkeypatch; commands still go through kombu's connection pool, "
        "so reconnects, `visibility_timeout` and acks behave as before. Sentinel URLs "
        "get its Sentinel twin (the same client reuse, owner records and deferred acks "
        "over kombu's Sentinel transport), also after kombu fails over to another "
        "Sentinel's URL. The deployed row has it on, \"deployed, no "
        'client reuse" the same worker without it; the seed rows run without it. The '
        "same transport records each delivery's owner for requeue on restart "
        "(`PIXCRAWLER_CELERY_REQUEUE_ON_RESTART`, on when deployed): HSET "
        f"{cmd.get('hset', NAN):.2f} and HDEL {cmd.get('hdel', NAN):.2f} per task in the "
        "deployed row, inside the MULTI/EXEC kombu already sends."
    )


CAVEATS = """\
- The machine was shared with other jobs during the run (load averages above, at the
  start of each section); each configuration ran interleaved with the others, and rounds
  that moved a lot show it in the "each round" column.
- Peak RSS sums VmRSS over the worker's processes, counting pages shared after fork once
  per process; PSS (from `smaps_rollup`) splits shared pages and is closer to what the
  host spends. Both sampled every 0.25-0.5 s.
- The deployed rows run the unit's command line, which does not pass
  `--without-gossip` or `--without-mingle` (gossip and mingle are on, as on a host).
  The seed and alternative rows are started by the test harness, which adds both flags.
  Every worker logs to a file.
- CPU per task for Redis comes from `INFO cpu`; for the worker from /proc (main process,
  live children and reaped children); for the client from the benchmark process.
- No timed assertions exist anywhere: this is a report, not a test; `tests/` does not
  run it."""
