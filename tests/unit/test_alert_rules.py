"""The alert rules for the monitoring role: valid, and each one tested both ways.

``promtool test rules`` evaluates every alert against made-up series (the test file
beside the rules); this test runs it and checks that every alert of the rule file has a
case where it fires and one where it does not, so a new alert cannot arrive untested.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

FILES = REPO / "ansible" / "roles" / "pixcrawler_monitoring" / "files"
RULES = FILES / "pixcrawler-alerts.yml"
TESTS = FILES / "pixcrawler-alerts.test.yml"


def _load(path: Path) -> Any:
    yaml = pytest.importorskip("yaml")  # the deploy group's, as in test_ansible_static.py
    return yaml.safe_load(path.read_text())


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/bootstrap)")
    return found


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", TESTS.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=FILES,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {
        rule["alert"]
        for group in _load(RULES)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    fires: set[str] = set()
    silent: set[str] = set()
    for case in _load(TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"


def test_every_alert_tells_the_operator_what_to_do() -> None:
    for group in _load(RULES)["groups"]:
        for rule in group["rules"]:
            annotations = rule.get("annotations", {})
            assert annotations.get("summary"), rule["alert"]
            assert len(annotations.get("description", "")) > 60, rule["alert"]
            assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
