"""Run every benchmark side by side against one Redis and write docs/BENCHMARKS.md.

    uv run python benchmarks/run.py            # full run, a few minutes on 2 cores
    uv run python benchmarks/run.py --quick    # smaller batches, for trying changes

Configurations are interleaved (seed, ours, seed, ours, ...) and repeated, and the report
gives medians and per-round ratios: on a shared 2-core machine the load changes from one
minute to the next, and only comparisons made close together in time mean anything.
Everything talks to loopback only.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # ``python benchmarks/run.py`` puts benchmarks/ itself on sys.path, not the repo.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.batch import BatchResult, run_batch
from benchmarks.cases import (
    BATCH,
    CRAWL_CASES,
    MAINTENANCE_CASE,
    THROUGHPUT_CASES,
    VALIDATION_CASES,
)
from benchmarks.crawl import run_crawl, slow_image_server
from benchmarks.crawl_profile import many_in_flight, profile_crawl
from benchmarks.env import Bench
from benchmarks.machine import load_average, machine_info
from benchmarks.polite import polite_row, site_servers
from benchmarks.redis_ceiling import redis_benchmark
from benchmarks.storage import run_store, store_cases
from benchmarks.throughput import ThroughputResult, publish_only, run_throughput
from benchmarks.validation import make_images, pillow_ceiling, run_validation
from pixcrawler.celery_core.config import CelerySettings

REPO = Path(__file__).resolve().parent.parent
#: Where the run writes its own wall time (between <!-- benchmark-wall-time --> marks).
README = REPO / "README.md"


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, one round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument(
        "--storage-only",
        action="store_true",
        help="run only (e), local vs S3 store, and print its table (the report is kept)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="also save the measurements here (pickle), for --render-only",
    )
    parser.add_argument(
        "--render-only",
        type=Path,
        default=None,
        metavar="DATA",
        help="write the report from measurements saved with --data, without measuring",
    )
    args = parser.parse_args(argv)
    if args.render_only is not None:
        with args.render_only.open("rb") as handle:
            saved: report.Report = pickle.load(handle)  # noqa: S301 - our own file
        args.output.write_text(report.render(saved))
        _say(f"wrote {args.output} from {args.render_only}")
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    n_tasks, n_rtt = (600, 20) if args.quick else (1500, 50)
    # Images per (c) row, the same for every row (batch rows: in tasks of BATCH URLs).
    n_crawl = 400 if args.quick else 1200
    # Per (d) row: a multiple of BATCH, so the batch row's tasks are all full.
    n_images = 200 if args.quick else 600
    # (a) is the headline and the noisiest; (c) and (d) move less from round to round.
    batch_rounds = rounds if args.quick or args.rounds else 2
    n_store = 200 if args.quick else 400

    started = time.perf_counter()
    if args.storage_only:
        with Bench() as bench:
            results = storage_rounds(bench, batch_rounds, n_store)
        print("\n".join(report.storage_table(results)))
        _say(f"(e) took {time.perf_counter() - started:.0f} s")
        return 0
    with Bench() as bench:
        data = report.Report(machine=machine_info(bench), rounds=rounds, batch_rounds=batch_rounds)

        _say("(b) redis-benchmark")
        data.load["(b)"] = load_average()
        data.redis = redis_benchmark(bench)

        _say("(a) publish rate without workers")
        data.load["(a)"] = load_average()
        data.publish_only = {}
        for profile, client in THROUGHPUT_CASES[:2]:
            events = profile.settings.get("ENABLE_MONITORING") == "true"
            label = f"{profile.label}: {client.label}, sent events {'on' if events else 'off'}"
            data.publish_only[label] = publish_only(bench, profile, client, n_tasks)
        throughput: list[ThroughputResult] = []
        for r in range(rounds):
            for profile, client in THROUGHPUT_CASES:
                _say(f"(a) round {r + 1}: {profile.label}")
                throughput.append(
                    run_throughput(bench, profile, client, n_tasks, n_rtt, profile.label)
                )
                _say(f"    {throughput[-1].rate:.0f} tasks/s")
        data.throughput = throughput

        _say("(c) crawl")
        data.load["(c)"] = load_average()
        crawl: list[BatchResult] = []
        with slow_image_server() as base, site_servers() as sites:
            first = 0
            for r in range(batch_rounds):
                for case in CRAWL_CASES:
                    _say(f"(c) round {r + 1}: {case.label}")
                    crawl.append(run_crawl(bench, case, base, first, n_crawl))
                    first += n_crawl + 200
                    _say(f"    {crawl[-1].rate:.0f} images/s")
                crawl.append(polite_row(bench, sites, first, n_crawl))  # benchmarks/polite.py
                first += n_crawl + 400
                _say(f"(c) round {r + 1}: {crawl[-1].label}: {crawl[-1].rate:.0f} images/s")
            # One of the batch row's worker processes, without Celery: its share of the
            # row's tasks at once in this process (the row spreads them over every unit).
            tasks = max(1, n_crawl // BATCH // CRAWL_CASES[-1].profile.instances)
            _say(f"(c) {tasks} batches of {BATCH} at once in this process, no Celery")
            many = many_in_flight(base, bench.root / "many-store", first, tasks, BATCH, 2)
        data.crawl = crawl
        _say("(c) where the CPU goes per image (crawl code alone, profiled)")
        with slow_image_server(delay=0) as base:
            data.crawl_profile = profile_crawl(base, bench.root / "profile-store", 2_000_000, 300)
        data.crawl_profile.many = many
        data.crawl_profile.in_flight = tasks * CelerySettings().crawl_batch_concurrency

        _say("(d) validation")
        data.load["(d)"] = load_average()
        images = make_images(bench.storage / "validation", n_images + 40)
        warm, batch = images[:40], images[40:]
        validation: list[BatchResult] = []
        nproc = int(data.machine["nproc"])
        batch_case, *one_per_task = reversed(VALIDATION_CASES)
        for r in range(batch_rounds + 1):
            # The batch row between two ceilings, measured back to back: the share of the
            # ceiling is taken per round, as the load drifts between rounds (one round
            # more than the other rows: each is short, and the share is the headline).
            before = pillow_ceiling(batch, nproc)
            validation.append(run_validation(bench, batch_case, warm, batch))
            after = pillow_ceiling(batch, nproc)
            data.validation_pairs.append((before, validation[-1], after))
            _say(
                f"(d) round {r + 1}: Pillow {before.rate:.0f}, {batch_case.label} "
                f"{validation[-1].rate:.0f}, Pillow {after.rate:.0f} images/s"
            )
            for case in reversed(one_per_task if r < batch_rounds else []):
                validation.append(run_validation(bench, case, warm, batch))
                _say(f"(d) round {r + 1}: {case.label} {validation[-1].rate:.0f} images/s")
        order = [c.label for c in VALIDATION_CASES]
        data.validation = sorted(validation, key=lambda v: order.index(v.label))

        data.load["(e)"] = load_average()
        data.storage = storage_rounds(bench, batch_rounds, n_store)

        _say("maintenance worker footprint")
        data.load["maintenance"] = load_average()
        data.maintenance = run_batch(
            bench,
            MAINTENANCE_CASE,
            queue="maintenance",
            task="celery_core.cleanup_expired_results",
            warmup=[500],
            payloads=[500] * 20,
            check=lambda envelopes: None,
            label="maintenance",
        )
        data.machine["load average at end (1/5/15 min)"] = load_average()
    data.elapsed = time.perf_counter() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.data is not None:
        with args.data.open("wb") as handle:
            pickle.dump(data, handle)
    args.output.write_text(report.render(data))
    _say(f"wrote {args.output} ({data.elapsed:.0f} s)")
    if not args.quick and args.rounds is None and report.stamp_wall_time(README, data.elapsed):
        _say(f"README.md: the run's wall time is now {data.elapsed:.0f} s")
    for line in report.summary(data):
        print(line)
    return 0


def storage_rounds(bench: Bench, rounds: int, n: int) -> list[BatchResult]:
    """(e): the local and the S3 store, interleaved, on a server with no delay."""
    results: list[BatchResult] = []
    with store_cases(bench) as cases, slow_image_server(delay=0) as base:
        first = 1_000_000  # image numbers no other section used
        for r in range(rounds):
            for case in cases:
                _say(f"(e) round {r + 1}: {case.label}")
                results.append(run_store(bench, case, base, first, n))
                first += n + 100
                _say(f"    {results[-1].rate:.0f} chains/s")
    return results


if __name__ == "__main__":
    sys.exit(main())
