"""(c) Crawl with per-site limits on: 50 simulated sites (127.0.0.2-51), batches of 100 URLs.

The image server is benchmarks/crawl.py's (100 ms per image, kept-alive connections),
started once per site on its own loopback address in one child process. Each site counts
the requests it has in flight and keeps the most it ever had, so the row proves the
limit held (``CRAWL_SITE_MAX_IN_FLIGHT``) instead of assuming it. Image *i* is on site
*i* mod 50, so every batch mixes all the sites, as a dataset build's lists do.

    uv run python -m benchmarks.polite          # this row and the seed's, side by side
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from benchmarks.batch import BatchResult, run_batch
from benchmarks.cases import CRAWL_CASES
from benchmarks.crawl import CRAWL_TASK, DELAY, _Handler, _Server, run_crawl, slow_image_server
from benchmarks.env import Bench, Profile

SITES = 50
BATCH = 100
FIRST_SITE = 2  # 127.0.0.2 .. 127.0.0.51


def site_address(site: int) -> str:
    return f"127.0.0.{FIRST_SITE + site}"


class _CountingHandler(_Handler):
    """A request is in flight from its arrival until its answer is sent. Counting until
    the handler returns instead let the next request (the client's, once it had the whole
    answer) arrive before this thread ran its last lines: one more than the client held."""

    server: _CountingServer
    _counted = False

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.most = max(server.most, server.in_flight)
        self._counted = True
        try:
            super().do_GET()
        finally:
            self.answered()

    def answered(self) -> None:
        if self._counted:
            self._counted = False
            with self.server.lock:
                self.server.in_flight -= 1


class _CountingServer(_Server):
    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _CountingHandler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0


def _serve_sites(ports: Any, most: Any, generation: Any, delay: float, sites: int) -> None:
    servers = []
    for site in range(sites):
        server = _CountingServer((site_address(site), 0))
        server.delay = delay
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports.put([s.server_address[1] for s in servers])
    seen = generation.value
    while True:  # publish each site's most-in-flight for the parent; reset when asked
        if generation.value != seen:
            seen = generation.value
            for server in servers:
                with server.lock:
                    server.most = server.in_flight
        for i, server in enumerate(servers):
            most[i] = server.most
        time.sleep(0.05)


@dataclass
class Sites:
    bases: list[str]
    #: Shared with the server process: the most requests each site had at once.
    most: Any
    generation: Any

    def reset(self) -> None:
        """Start counting afresh (the server process notices within 50 ms)."""
        self.generation.value += 1
        time.sleep(0.2)

    def max_in_flight(self) -> int:
        time.sleep(0.2)  # the server publishes every 50 ms
        return int(max(self.most[:]))


@contextlib.contextmanager
def site_servers(delay: float = DELAY, sites: int = SITES) -> Iterator[Sites]:
    """Base URLs of *sites* image servers, one per loopback address, in a child process."""
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    most: Any = ctx.Array("i", sites, lock=False)
    generation: Any = ctx.Value("i", 0)
    proc = ctx.Process(
        target=_serve_sites, args=(ports, most, generation, delay, sites), daemon=True
    )
    proc.start()
    try:
        found = ports.get(timeout=60)
        bases = [f"http://{site_address(i)}:{port}" for i, port in enumerate(found)]
        yield Sites(bases, most, generation)
    finally:
        proc.terminate()
        proc.join(10)


def polite_profile(base: Profile, on: bool = True) -> Profile:
    """The crawl row's workers with politeness on at its defaults (stated, not assumed),
    or off (the same batches and sites, for the cost of politeness itself)."""
    flag = "true" if on else "false"
    settings = {k: v for k, v in base.settings.items() if k != "CRAWL_EXEMPT_HOSTS"}
    settings |= {"CRAWL_OBEY_ROBOTS": flag, "CRAWL_SITE_LIMITS": flag}
    label = (
        f"{base.label}, per-site limits {'on' if on else 'off'}, {SITES} sites, batches of {BATCH}"
    )
    return replace(base, label=label, settings=settings)


@dataclass
class PoliteResult:
    result: BatchResult
    #: The most requests any one site had in flight at once, as the sites counted them.
    max_in_flight: int
    limit: int
    min_delay: float


def _urls(sites: Sites, first: int, n: int) -> list[str]:
    return [f"{sites.bases[i % len(sites.bases)]}/img/{i}.png" for i in range(first, first + n)]


def _check(envelopes: list[Any]) -> None:
    bad = [e for e in envelopes if e["data"]["failed"]]
    if bad:
        raise RuntimeError(f"{len(bad)} batches lost images: {bad[0]['data']['outcomes'][:3]!r}")


def run_polite_crawl(
    bench: Bench, profile: Profile, sites: Sites, first: int, n: int
) -> PoliteResult:
    """Crawl images first..first+n in batches of BATCH URLs, every site limited."""
    from pixcrawler.celery_core.config import load_settings

    warm_n = BATCH * 2
    warm = _urls(sites, first, warm_n)
    urls = _urls(sites, first + warm_n, n)
    batches = [urls[i : i + BATCH] for i in range(0, len(urls), BATCH)]
    sites.reset()
    warm_batches = [warm[i : i + BATCH] for i in range(0, len(warm), BATCH)]
    result = run_batch(
        bench,
        profile,
        queue="crawl",
        task=CRAWL_TASK,
        warmup=warm_batches,
        payloads=batches,
        check=_check,
        label=profile.label,
    )
    result.items = n  # images, not tasks
    settings = load_settings(bench.env(profile))
    return PoliteResult(
        result,
        sites.max_in_flight(),
        settings.crawl_site_max_in_flight,
        settings.crawl_site_min_delay,
    )


def polite_row(bench: Bench, sites: Sites, first: int, n: int) -> BatchResult:
    """The report's row (run.py): the crawl table's "ours" workers with limits on; its
    settings column says what the sites counted."""
    measured = run_polite_crawl(bench, polite_profile(CRAWL_CASES[-1].profile), sites, first, n)
    measured.result.profile += (
        f"; the sites counted at most {measured.max_in_flight} in flight per site "
        f"(limit {measured.limit}, {measured.min_delay} s apart)"
    )
    measured.result.site_most = measured.max_in_flight
    measured.result.site_limit = measured.limit
    return measured.result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--off", action="store_true", help="also the same batches, limits off")
    args = parser.parse_args(argv)
    seed, ours = CRAWL_CASES[0], CRAWL_CASES[-1]
    polite = polite_profile(ours.profile)
    rows: list[tuple[str, float, str]] = []
    with Bench() as bench, slow_image_server() as base, site_servers() as sites:
        first = 0
        for r in range(args.rounds):
            seed_result = run_crawl(bench, seed, base, first, min(args.images, 600))
            first += args.images + 400
            rows.append((f"round {r + 1}: {seed.label}, one URL per task", seed_result.rate, ""))
            print(rows[-1], flush=True)
            polite_result = run_polite_crawl(bench, polite, sites, first, args.images)
            first += args.images + 400
            held = (
                f"max in flight per site {polite_result.max_in_flight} "
                f"(limit {polite_result.limit}, {polite_result.min_delay} s apart)"
            )
            rows.append((f"round {r + 1}: {polite.label}", polite_result.result.rate, held))
            print(rows[-1], flush=True)
            print(
                f"  ratio {polite_result.result.rate / seed_result.rate:.2f}x the seed; "
                f"worker CPU {polite_result.result.worker_cpu_s / args.images * 1000:.2f} ms/image",
                flush=True,
            )
            if args.off:
                off = run_polite_crawl(
                    bench, polite_profile(ours.profile, on=False), sites, first, args.images
                )
                first += args.images + 400
                print(
                    f"round {r + 1}: limits off {off.result.rate:.0f} images/s, max in flight "
                    f"per site {off.max_in_flight}, worker CPU "
                    f"{off.result.worker_cpu_s / args.images * 1000:.2f} ms/image",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
