"""The configurations compared: the seed's, what the Ansible role deploys, and alternatives.

Every queue has a "deployed" row built by :func:`deployed_profile` from what the role
installs (deployed.py reads the role's defaults, its settings template and the unit's
command line); tests/unit/test_benchmark_rows.py fails if a row drifts from it. The
other rows are alternatives measured beside it, labelled as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from benchmarks.deployed import deployed
from benchmarks.env import Profile, seed_profile
from benchmarks.throughput import OUR_CLIENT, SEED_CLIENT, ClientStyle

WARNING = ("--loglevel=WARNING",)
DEPLOYED = "deployed"

#: One consuming process per core for the alternatives whose pool uses one core.
CORES = os.cpu_count() or 2


def deployed_profile(queue: str, label: str = DEPLOYED, **settings: str) -> Profile:
    """The worker a prod host runs for *queue*; *settings* only for labelled variants."""
    d = deployed(queue)
    return Profile(
        label,
        d.pool,
        d.concurrency,
        {**d.settings, **settings},
        instances=d.instances,
        patched=d.client_reuse,
        deployed=d,
    )


def _solo_units(label: str) -> Profile:
    """The alternative for short tasks: one solo unit per core (no parent/child pipe)."""
    return Profile(
        label,
        "solo",
        1,
        {
            "WORKER_PREFETCH_MULTIPLIER": "4",
            "TASK_ACKS_LATE": "true",
            "TASK_TRACK_STARTED": "false",
            "ENABLE_MONITORING": "true",
        },
        WARNING,
        CORES,
        patched=True,
    )


#: (a) rows on the ``default`` queue: (profile, client). The first is the baseline.
THROUGHPUT_CASES: list[tuple[Profile, ClientStyle]] = [
    (seed_profile("seed"), SEED_CLIENT),
    (deployed_profile("default"), OUR_CLIENT),
    (deployed_profile("default", "deployed, events off", ENABLE_MONITORING="false"), OUR_CLIENT),
    (
        deployed_profile("default", "deployed, no client reuse", REDIS_CLIENT_REUSE="false"),
        OUR_CLIENT,
    ),
    (_solo_units(f"alternative: {CORES} solo units"), OUR_CLIENT),
]


@dataclass(frozen=True)
class BatchCase:
    """A (c) or (d) row: a worker profile and how many items each task carries."""

    label: str
    profile: Profile
    per_task: int = 1


#: What a dataset build hands one crawl task, and so one chained validate task.
BATCH = 100

#: The one-site crawl rows download every image from one loopback server. Politeness is
#: on when deployed, and at one site it would measure the site limit (4 in flight, 0.1 s
#: apart: 10 images/s), not the crawler; so these rows exempt that server the way an
#: operator exempts a source it owns. benchmarks/polite.py's row measures the limits.
ONE_SITE = {"CRAWL_EXEMPT_HOSTS": "127.0.0.1"}

CRAWL_CASES: list[BatchCase] = [
    BatchCase("seed, one URL per task", seed_profile("seed")),
    BatchCase("deployed, one URL per task", deployed_profile("crawl", **ONE_SITE)),
    BatchCase(f"deployed, {BATCH} URLs per task", deployed_profile("crawl", **ONE_SITE), BATCH),
]

VALIDATION_CASES: list[BatchCase] = [
    BatchCase("seed, one path per task", seed_profile("seed")),
    BatchCase("deployed, one path per task", deployed_profile("validation")),
    BatchCase(f"deployed, {BATCH} paths per task", deployed_profile("validation"), BATCH),
]

MAINTENANCE_CASE = deployed_profile("maintenance")
