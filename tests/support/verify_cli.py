"""Running the operator's verification script as a subprocess, as on a host, and reading it.

Shared by the verification tests and the S3 store's: the script only ever gets an env
file, never a secret on its command line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pixcrawler.celery_core.queues import QUEUE_NAMES
from tests.support.paths import REPO

SCRIPT = REPO / "scripts" / "test_celery_redis.py"
LINE = re.compile(r"^(PASS|FAIL|SKIP)  (\S+) +(\d+)  (.*)$")
#: Guard against a hung script; the script's own --timeout is what is being tested.
HANG_GUARD = 90

ALL_NAMES = [
    "settings",
    "sentinel",
    "broker",
    "result_backend",
    "storage",
    *(f"consumers[{q}]" for q in QUEUE_NAMES),
    *(f"health_check[{q}]" for q in QUEUE_NAMES),
    "crawl_validate_chain",
]

#: Checks that do not apply to a plain redis:// broker (SKIP, which --strict ignores).
SENTINEL_ONLY = {"sentinel"}


def write_env_file(path: Path, env: Mapping[str, str], **overrides: str) -> Path:
    values = {k: v for k, v in env.items() if k.startswith("PIXCRAWLER_CELERY_")}
    values.update({f"PIXCRAWLER_CELERY_{k.upper()}": v for k, v in overrides.items()})
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def operator_env() -> dict[str, str]:
    """A shell without PixCrawler variables, as an operator's login would be."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIXCRAWLER_")}


def run_script(
    *args: str, script: Path = SCRIPT, cwd: Path = REPO, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # Workers on loopback answer an inspect in milliseconds; 1.5 s is for real networks.
        [sys.executable, str(script), "--inspect-timeout", "0.5", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(env if env is not None else operator_env()),
        timeout=HANG_GUARD,
        check=False,
    )


def checks_of(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    try:
        document = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    assert set(document) == {"ok", "checks"}
    return {c["name"]: c for c in document["checks"]}


def statuses(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {name: c["status"] for name, c in checks_of(proc).items()}


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
