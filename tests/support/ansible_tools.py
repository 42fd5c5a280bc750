"""Running the Ansible tools from the test environment, as the static and deploy tests do."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def tool(name: str) -> Path:
    """A console script of the locked environment; skipped (not failed) without the deploy group."""
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (uv sync --group deploy)")
    return path


def clean_env() -> dict[str, str]:
    """The test session's PIXCRAWLER_* variables must not leak into a deploy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXCRAWLER_")}
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env
