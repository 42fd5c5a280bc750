"""The benchmark's "deployed" rows run exactly what the Ansible role installs.

Read here independently of benchmarks/deployed.py: the unit's ExecStart= (parsed as
test_systemd_units.py parses it) with the queue's settings file as the role's template
renders it, the app settings pixcrawler.env gets for prod, one unit per queue. A row that
drifts (another pool, concurrency, instance count, events or client reuse, a flag the
unit does not pass) fails here, and so does a queue without a deployed row.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from typing import Any

import jinja2
import pytest
import yaml  # type: ignore[import-untyped]

from benchmarks.cases import (
    CRAWL_CASES,
    DEPLOYED,
    MAINTENANCE_CASE,
    ONE_SITE,
    THROUGHPUT_CASES,
    VALIDATION_CASES,
)
from benchmarks.env import Profile
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.queues import QUEUE_NAMES
from tests.support.paths import REPO
from tests.support.role_templates import ROLES, render, role_vars
from tests.unit.test_systemd_units import WORKER, as_argv, load, one

ROLE = "pixcrawler_workers"


def role_settings(queue: str) -> dict[str, Any]:
    """fallback | queue_defaults[queue], as the role's tasks/main.yml combines them."""
    tasks = yaml.safe_load((ROLES / ROLE / "tasks" / "main.yml").read_text())
    combine = next(t for t in tasks if "settings" in (t.get("vars") or {}) and "loop" in t)
    expression = combine["vars"]["settings"]
    assert "pixcrawler_workers_fallback | combine(pixcrawler_workers_queue_defaults[queue]" in (
        " ".join(expression.split())
    ), "the role combines its settings differently now: update this test and deployed.py"
    values = role_vars(ROLE, ansible_processor_vcpus=os.cpu_count() or 1)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701 - not HTML
    defaults = values["pixcrawler_workers_queue_defaults"][queue]
    merged = {**values["pixcrawler_workers_fallback"], **defaults}
    return {
        k: env.from_string(v).render(values) if isinstance(v, str) else v for k, v in merged.items()
    }


def installed(queue: str) -> dict[str, Any]:
    """What a prod host runs for *queue*: command line, settings, units."""
    settings = role_settings(queue)
    text = render(ROLE, "worker.env.j2", queue=queue, worker=queue, settings=settings)
    worker_env = {
        k: shlex.split(v)[0]
        for k, _, v in (
            line.partition("=") for line in text.splitlines() if line and line[0] != "#"
        )
    }
    argv = [
        worker_env.get(arg[1:], arg)
        for arg in as_argv(one(load(WORKER), "Service", "ExecStart"), queue)
    ]
    prod = yaml.safe_load((REPO / "env" / "prod.yml").read_text())["pixcrawler_settings"]
    fields = CelerySettings.model_fields

    def flag(name: str) -> bool:
        return bool(prod.get(name, fields[name].default))

    return {
        "argv": argv[1:],
        "instances": int(settings["instances"]) * systemd_starts(),
        "events": flag("enable_monitoring"),
        "client_reuse": flag("redis_client_reuse"),
        "requeue_on_restart": flag("requeue_on_restart"),
        "settings": {
            k.upper(): str(v).lower() if isinstance(v, bool) else str(v) for k, v in prod.items()
        },
    }


def systemd_starts() -> int:
    """Units systemd.yml starts per wanted worker name (one pixcrawler-worker@<name> each)."""
    tasks = yaml.safe_load((ROLES / ROLE / "tasks" / "systemd.yml").read_text())
    start = next(t for t in tasks if t["name"] == "Enable and start the workers")
    assert start["loop"] == "{{ pixcrawler_workers_wanted }}"
    unit = start["ansible.builtin.systemd_service"]["name"]
    return len(re.findall(r"pixcrawler-worker@\{\{ worker \}\}", unit))


def drift(profile: Profile, queue: str) -> list[str]:
    """How *profile* differs from what the role installs for *queue* (empty: it does not)."""
    want = installed(queue)
    d = profile.deployed
    if d is None:
        return [f"{profile.label}: not built from the role (no deployed settings)"]
    problems = []
    got_argv = list(d.argv)
    got_argv[got_argv.index("-n") + 1] = want["argv"][want["argv"].index("-n") + 1]
    if got_argv != want["argv"]:
        problems.append(f"{profile.label}: command line {got_argv} != unit's {want['argv']}")
    for name, got in (
        ("pool", profile.pool),
        ("concurrency", str(profile.concurrency)),
        ("instances", profile.instances),
        ("events", profile.flag("ENABLE_MONITORING", d.events)),
        ("client_reuse", profile.flag("REDIS_CLIENT_REUSE", d.client_reuse)),
        ("requeue_on_restart", profile.flag("REQUEUE_ON_RESTART", d.requeue_on_restart)),
    ):
        expected = {
            "pool": want["argv"][want["argv"].index("-P") + 1],
            "concurrency": want["argv"][want["argv"].index("-c") + 1],
        }.get(name, want.get(name))
        if got != expected:
            problems.append(f"{profile.label}: {name} {got!r}, the role installs {expected!r}")
    # The one-site crawl rows exempt their image server (cases.ONE_SITE), as an operator
    # exempts a source it owns, and say so in their settings column; nothing else differs.
    settings = {k: v for k, v in profile.settings.items() if ONE_SITE.get(k) != v}
    if settings != want["settings"]:
        problems.append(f"{profile.label}: settings {settings} != {want['settings']}")
    return problems


#: The deployed row of each queue.
DEPLOYED_ROWS: dict[str, list[Profile]] = {
    "default": [p for p, _ in THROUGHPUT_CASES if p.label == DEPLOYED],
    "crawl": [c.profile for c in CRAWL_CASES if c.label.startswith(DEPLOYED)],
    "validation": [c.profile for c in VALIDATION_CASES if c.label.startswith(DEPLOYED)],
    "maintenance": [MAINTENANCE_CASE],
}


def test_every_queue_has_a_deployed_row() -> None:
    assert set(DEPLOYED_ROWS) == set(QUEUE_NAMES)
    for queue, rows in DEPLOYED_ROWS.items():
        assert rows, f"no deployed row for queue {queue}"


@pytest.mark.parametrize("queue", QUEUE_NAMES)
def test_deployed_rows_run_what_the_role_installs(queue: str) -> None:
    for profile in DEPLOYED_ROWS[queue]:
        assert drift(profile, queue) == []


def test_the_units_pass_neither_gossip_nor_mingle_flags() -> None:
    """The report says so; the deployed rows therefore run with gossip and mingle on."""
    argv = installed("crawl")["argv"]
    assert "--without-gossip" not in argv
    assert "--without-mingle" not in argv


def test_drift_is_caught() -> None:
    crawl = DEPLOYED_ROWS["crawl"][0]
    assert crawl.deployed is not None
    assert any(
        "concurrency" in p for p in drift(dataclasses.replace(crawl, concurrency=32), "crawl")
    )
    more = dataclasses.replace(crawl, instances=crawl.instances + 1)
    assert any("instances" in p for p in drift(more, "crawl"))
    no_reuse = dataclasses.replace(crawl.deployed, client_reuse=False)
    assert any(
        "client_reuse" in p for p in drift(dataclasses.replace(crawl, deployed=no_reuse), "crawl")
    )
    flags = dataclasses.replace(crawl.deployed, argv=(*crawl.deployed.argv, "--without-gossip"))
    assert any(
        "command line" in p for p in drift(dataclasses.replace(crawl, deployed=flags), "crawl")
    )
    quiet = dataclasses.replace(crawl, settings={**crawl.settings, "ENABLE_MONITORING": "false"})
    assert any("events" in p for p in drift(quiet, "crawl"))
    assert drift(dataclasses.replace(crawl, deployed=None), "crawl")
    # The row of one queue is not another queue's.
    assert drift(crawl, "validation")
