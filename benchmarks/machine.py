"""What the numbers were measured on: written into the report next to them."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.env import Bench


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_info(bench: Bench) -> dict[str, str]:
    server = bench.redis.client().info("server")
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = "unknown"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": nproc or str(os.cpu_count()),
        "CPU": model,
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "Celery": version("celery"),
        "kombu": version("kombu"),
        "redis-py": version("redis"),
        "hiredis": version("hiredis"),
        "Pillow": version("pillow"),
        "redis-server": str(server["redis_version"]),
        "load average at start (1/5/15 min)": load_average(),
    }
