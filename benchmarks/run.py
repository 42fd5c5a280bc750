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
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # ``python benchmarks/run.py`` puts benchmarks/ itself on sys.path, not the repo.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks.batch import BatchResult, run_batch
from benchmarks.cases import CRAWL_CASES, MAINTENANCE_CASE, THROUGHPUT_CASES, VALIDATION_CASES
from benchmarks.crawl import run_crawl, slow_image_server
from benchmarks.env import Bench
from benchmarks.machine import load_average, machine_info
from benchmarks.polite import polite_row, site_servers
from benchmarks.redis_ceiling import redis_benchmark
from benchmarks.storage import run_store, store_cases
from benchmarks.throughput import ThroughputResult, publish_only, run_throughput
from benchmarks.validation import make_images, pillow_ceiling, run_validation

REPO = Path(__file__).resolve().parent.parent


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
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    n_tasks, n_rtt = (600, 20) if args.quick else (1500, 50)
    n_crawl = 300 if args.quick else 600
    n_images = 150 if args.quick else 240
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
        data.redis = redis_benchmark(bench)

        _say("(a) publish rate without workers")
        data.publish_only = {}
        for profile, client in THROUGHPUT_CASES[:3]:
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
        crawl: list[BatchResult] = []
        with slow_image_server() as base, site_servers() as sites:
            first = 0
            for r in range(batch_rounds):
                for profile in CRAWL_CASES:
                    _say(f"(c) round {r + 1}: {profile.label}")
                    crawl.append(run_crawl(bench, profile, base, first, n_crawl))
                    first += n_crawl + 200
                    _say(f"    {crawl[-1].rate:.0f} images/s")
                crawl.append(polite_row(bench, sites, first, n_crawl))  # benchmarks/polite.py
                first += n_crawl + 400
                _say(f"(c) round {r + 1}: {crawl[-1].label}: {crawl[-1].rate:.0f} images/s")
        data.crawl = crawl

        _say("(d) validation")
        images = make_images(bench.storage / "validation", n_images + 40)
        warm, batch = images[:40], images[40:]
        validation: list[BatchResult] = []
        ceilings: list[float] = []
        nproc = int(data.machine["nproc"])
        for r in range(batch_rounds):
            # The ceiling is measured before and after the workers, as load drifts.
            ceilings.append(pillow_ceiling(batch, nproc)[0])
            _say(f"(d) round {r + 1}: Pillow ceiling {ceilings[-1]:.0f} images/s")
            for profile in VALIDATION_CASES:
                validation.append(run_validation(bench, profile, warm, batch))
                _say(f"(d) round {r + 1}: {profile.label} {validation[-1].rate:.0f} images/s")
            ceilings.append(pillow_ceiling(batch, nproc)[0])
            _say(f"(d) round {r + 1}: Pillow ceiling {ceilings[-1]:.0f} images/s")
        data.validation = validation
        data.validation_ceiling = ceilings

        data.storage = storage_rounds(bench, batch_rounds, n_store)

        _say("maintenance worker footprint")
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
    args.output.write_text(report.render(data))
    _say(f"wrote {args.output} ({data.elapsed:.0f} s)")
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
