"""(d) Validation throughput through a real worker, against Pillow's own ceiling.

The ceiling is :func:`inspect_image` (header checks, ``verify()``, full ``load()``: exactly
what ``validate_task`` does per file) on every core with :mod:`multiprocessing`, with no
Celery and no Redis. The gap between the two is the price of the task machinery.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.batch import BatchResult, run_batch
from benchmarks.cases import BatchCase
from benchmarks.crawl import chunks
from benchmarks.env import Bench
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.validator.images import inspect_image

VALIDATE_TASK = "validator.tasks.validate_task"
SIZE = (1024, 768)


def make_images(directory: Path, count: int, seed: int = 7) -> list[Path]:
    """Distinct JPEGs of a photo-like size: a gradient, noise and a per-image stripe."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize(SIZE).convert("RGB")
    noise = Image.effect_noise(SIZE, 30).convert("RGB")
    mixed = Image.blend(base, noise, 0.25)
    paths = []
    for i in range(count):
        image = mixed.copy()
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        image.paste(colour, (0, i % SIZE[1], SIZE[0], i % SIZE[1] + 8))
        path = directory / f"bench-{i:05d}.jpg"
        image.save(path, format="JPEG", quality=85)
        paths.append(path)
    return paths


@lru_cache(maxsize=1)
def _settings() -> CelerySettings:
    # Built once per process, as a worker's app loads its settings once: building it costs more
    # than decoding a small image.
    return CelerySettings()


def _inspect(path: str) -> tuple[str, float]:
    """The format, and the CPU seconds this process spent reading and checking it."""
    start = time.process_time()
    fmt = inspect_image(Path(path).read_bytes(), _settings()).format
    return fmt, time.process_time() - start


@dataclass
class Ceiling:
    rate: float
    seconds: float
    #: CPU of the decoding processes per image (ms).
    cpu_ms: float


def pillow_ceiling(paths: list[Path], processes: int) -> Ceiling:
    """inspect_image over *paths* on *processes* processes: images/s and CPU per image."""
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_inspect, [str(p) for p in paths[: processes * 2]])  # warm the pool
        start = time.perf_counter()
        done = pool.map(_inspect, [str(p) for p in paths], chunksize=4)
        seconds = time.perf_counter() - start
    formats = {fmt for fmt, _ in done}
    if formats != {"JPEG"}:
        raise RuntimeError(f"Pillow ceiling: unexpected formats {formats}")
    cpu = sum(c for _, c in done)
    return Ceiling(len(paths) / seconds, seconds, cpu * 1000 / len(paths))


def _check(envelopes: list[Any]) -> None:
    bad = [
        e
        for e in envelopes
        if e["data"]["invalid"] or len(e["data"]["valid"]) + e["data"]["duplicates"] == 0
    ]
    if bad:
        raise RuntimeError(f"{len(bad)} tasks did not accept their images: {bad[0]['data']!r}")


def run_validation(
    bench: Bench, case: BatchCase, warm: list[Path], paths: list[Path]
) -> BatchResult:
    """Validate *paths*, *case.per_task* per task."""
    return run_batch(
        bench,
        case.profile,
        queue="validation",
        task=VALIDATE_TASK,
        warmup=[str(p) for p in warm],  # one per task: every child warms up
        payloads=chunks([str(p) for p in paths], case.per_task),
        check=_check,
        label=case.label,
        items=len(paths),
    )
