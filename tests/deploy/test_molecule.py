"""The Molecule scenarios, run as part of the suite (``pytest -m ansible``).

Each scenario converges real hosts (Docker containers with systemd as PID 1, or with a
plain PID 1 for supervisord), checks idempotence and a ``--check`` run, and runs the shared
verify (ansible/molecule/shared/verify.yml). Docker is started and the Debian images are
built (or reused) by the repo's own scripts. Without a working Docker engine these tests
FAIL: a skipped Molecule run would look like a green one.

PIXCRAWLER_MOLECULE_SCENARIOS picks a subset (comma list of scenario or scenario:release,
e.g. ``supervisor,multihost:trixie``); the default is every scenario on Debian 12, where
``default`` puts its prod-like host on Debian 13 (PIXCRAWLER_TEST_RELEASE_PROD), so both
releases are converged and verified. Logs go to $PIXCRAWLER_MOLECULE_LOGS (default: a
temp dir).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from tests.support.paths import REPO

MOLECULE = REPO / "ansible" / "molecule"
RUN = MOLECULE / "run"
DEFAULT_MATRIX = "default,multihost,supervisor"
LOGS = Path(os.environ.get("PIXCRAWLER_MOLECULE_LOGS") or tempfile.mkdtemp(prefix="molecule-"))


def _matrix() -> list[tuple[str, str]]:
    raw = os.environ.get("PIXCRAWLER_MOLECULE_SCENARIOS") or DEFAULT_MATRIX
    out = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        scenario, _, release = item.partition(":")
        out.append((scenario, release or "bookworm"))
    return out


def _run(argv: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> int:
    with log.open("w") as out:
        proc = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
        )
    return proc.returncode


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


_FAILED = re.compile(r"^(fatal|failed): \[|^ERROR! ")


def _failures(log: Path, after: int = 25, most: int = 3) -> str:
    """The last failed tasks, each under its TASK line: the tail of a failed scenario is
    only Molecule's destroy step, and CI keeps nothing but this message. The last ones,
    because the verify provokes failures on purpose (and rescues them) before the real one."""
    text = log.read_text(errors="replace").splitlines()
    found = [i for i, line in enumerate(text) if _FAILED.search(line)][-most:]
    out: list[str] = []
    for i in found:
        task = next((t for t in reversed(text[:i]) if t.startswith("TASK [")), "")
        out += ["", task, *text[i : i + after]]
    return "\n".join(out) if out else "(no failed task in the log)"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / "start-docker.log"
    if _run([str(REPO / "testhosts/start-docker")], log, timeout=600) != 0:
        pytest.fail(f"Docker engine could not be started; Molecule cannot run:\n{_tail(log)}")


@pytest.fixture(scope="session")
def test_images(docker_engine: None) -> set[str]:
    prod = os.environ.get("PIXCRAWLER_TEST_RELEASE_PROD", "trixie")
    releases = sorted({release for _, release in _matrix()} | {prod})
    log = LOGS / "build-test-images.log"
    if _run([str(REPO / "testhosts/build-test-images"), *releases], log, timeout=1200) != 0:
        pytest.fail(f"test-host images could not be built:\n{_tail(log)}")
    return set(releases)


def _known_secrets() -> list[str]:
    """Passwords the scenarios deploy: they must never show in Molecule's output."""
    found = re.findall(
        r"^\s*\w*(?:password|secret)\w*:\s*([^\s#\"']+)", (REPO / "env/dev.yml").read_text(), re.M
    )
    view = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "view",
            "--vault-password-file",
            str(MOLECULE / "test-vault-password.txt"),
            str(MOLECULE / "shared/sandbox/test-vault.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    vault = yaml.safe_load(view.stdout)
    secret_words = ("password", "secret", "passphrase")
    found += [str(v) for k, v in vault.items() if any(w in k for w in secret_words)]
    assert found, "no secrets found to look for"
    return found


@pytest.mark.ansible
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(("scenario", "release"), _matrix(), ids=lambda v: str(v))
def test_scenario(test_images: set[str], scenario: str, release: str) -> None:
    log = LOGS / f"molecule-{scenario}-{release}.log"
    start = time.monotonic()
    rc = _run(
        [str(RUN), scenario, "test"],
        log,
        timeout=3300,
        env={
            "PIXCRAWLER_TEST_RELEASE": release,
            "PIXCRAWLER_MOLECULE_SANDBOX": f"/tmp/pixcrawler-molecule/{scenario}-{release}",
        },
    )
    elapsed = time.monotonic() - start
    print(f"molecule {scenario} on {release}: rc={rc} in {elapsed:.0f} s (log: {log})")
    assert rc == 0, (
        f"molecule test -s {scenario} ({release}) failed:\n{_failures(log)}\n"
        f"--- end of the log ---\n{_tail(log, 25)}"
    )
    text = log.read_text(errors="replace")
    for step in ("converge", "idempotence", "check", "verify"):
        assert re.search(rf"\[{scenario} > {step}\] Executed: Successful", text), step
    leaked = [s for s in _known_secrets() if s in text]
    assert not leaked, f"{len(leaked)} secret(s) appear in the Molecule output ({log})"
    # The hosts' TLS keys are made or copied during the run: no PEM key may show either.
    assert "PRIVATE KEY-----" not in text, f"a private key appears in the Molecule output ({log})"


# --- cheap consistency checks (no Docker) ------------------------------------------------


def test_sandbox_adds_settings_and_replaces_none() -> None:
    """The sandbox may add what a test host needs; the shipped values must reach the hosts
    (the verify step compares env/<env>.yml with each host's env file)."""
    test = yaml.safe_load((MOLECULE / "shared/sandbox/prod-molecule.yml").read_text())
    prod = yaml.safe_load((REPO / "env/prod.yml").read_text())
    assert set(test) == {"pixcrawler_settings_extra"}, "the sandbox may only add settings"
    assert not set(test["pixcrawler_settings_extra"]) & set(prod["pixcrawler_settings"])
    verify = (MOLECULE / "shared/verify.yml").read_text()
    assert "tasks/settings.yml" in verify


def test_every_scenario_runs_the_full_sequence() -> None:
    """The sequence lives in the shared base config; a scenario may only override it whole."""
    base = yaml.safe_load((MOLECULE / "shared/config.yml").read_text())
    scenarios = sorted(MOLECULE.glob("*/molecule.yml"))
    assert {p.parent.name for p in scenarios} >= {"default", "multihost", "supervisor"}
    for path in scenarios:
        own = yaml.safe_load(path.read_text()).get("scenario", {})
        seq = own.get("test_sequence") or base["scenario"]["test_sequence"]
        for step in ("create", "converge", "idempotence", "check", "verify", "destroy"):
            assert step in seq, f"{path.parent.name} lacks {step}"
        assert seq.index("converge") < seq.index("idempotence") < seq.index("check")


#: Which multihost test host plays which env/prod/hosts.yml host.
MULTIHOST_AS_PROD = {
    "pxc-mh-redis": "redis-1.prod.example.internal",
    "pxc-mh-redis2": "redis-2.prod.example.internal",
    "pxc-mh-redis3": "redis-3.prod.example.internal",
    "pxc-mh-worker1": "worker-1.prod.example.internal",
    "pxc-mh-worker2": "worker-2.prod.example.internal",
}


def _prod_shape() -> tuple[dict[str, set[str]], dict[str, object]]:
    """env/prod/hosts.yml: group -> hosts, and each worker host's queues."""
    inventory = yaml.safe_load((REPO / "env/prod/hosts.yml").read_text())
    groups = {name: set((body or {}).get("hosts") or {}) for name, body in inventory.items()}
    queues = {
        host: (hostvars or {}).get("pixcrawler_workers_queues")
        for host, hostvars in ((inventory.get("workers") or {}).get("hosts") or {}).items()
    }
    return groups, queues


def _multihost_shape() -> tuple[dict[str, set[str]], dict[str, object]]:
    """The multihost scenario in prod's host names: group -> hosts, worker host -> queues."""
    scenario = yaml.safe_load((MOLECULE / "multihost/molecule.yml").read_text())
    groups: dict[str, set[str]] = {}
    for platform in scenario["platforms"]:
        for group in platform["groups"]:
            groups.setdefault(group, set()).add(MULTIHOST_AS_PROD[platform["name"]])
    host_vars = scenario["provisioner"]["inventory"].get("host_vars", {})
    queues = {
        MULTIHOST_AS_PROD[host]: hostvars.get("pixcrawler_workers_queues")
        for host, hostvars in host_vars.items()
        if MULTIHOST_AS_PROD[host] in groups.get("workers", set())
    }
    return groups, queues


def test_multihost_mirrors_prod() -> None:
    """The multihost scenario is env/prod/hosts.yml on test hosts: the same groups on the
    same hosts (objectstore on the Redis host, Flower and beat on the worker hosts) and the
    same queues per worker host, so the scenario tests the shape prod ships."""
    scenario = yaml.safe_load((MOLECULE / "multihost/molecule.yml").read_text())
    names = {p["name"] for p in scenario["platforms"]}
    assert names == set(MULTIHOST_AS_PROD), "map every multihost host to a prod host"
    prod_groups, prod_queues = _prod_shape()
    mh_groups, mh_queues = _multihost_shape()
    assert mh_groups == prod_groups
    assert mh_queues == prod_queues
    # ... and the hosts share nothing but the network: one image store is the object store.
    for platform in scenario["platforms"]:
        volumes = platform.get("volumes") or []
        assert volumes == ["/sys/fs/cgroup:/sys/fs/cgroup:rw"], platform["name"]


def test_multihost_mirror_check_can_fail() -> None:
    groups, queues = _prod_shape()
    moved = {g: set(h) for g, h in groups.items()}
    moved["beat"] = {"worker-1.prod.example.internal"}
    assert moved != groups
    swapped = dict(queues)
    swapped["worker-1.prod.example.internal"] = ["crawl", "validation"]
    assert swapped != queues


def test_test_vault_is_marked_test_only() -> None:
    password = (MOLECULE / "test-vault-password.txt").read_text()
    assert "TEST-ONLY" in password
    assert (MOLECULE / "shared/sandbox/test-vault.yml").read_text().startswith("$ANSIBLE_VAULT")


def test_a_failed_scenario_names_its_failed_task(tmp_path: Path) -> None:
    log = tmp_path / "molecule.log"
    log.write_text(
        "TASK [Start the queue]\nok: [a]\nTASK [Check the alert]\n"
        'fatal: [a]: FAILED! => {"msg": "no alert"}\n' + "TASK [destroy]\nok: [x]\n" * 40
    )
    report = _failures(log)
    assert "TASK [Check the alert]" in report
    assert "no alert" in report
    assert "Start the queue" not in report
    log.write_text("TASK [x]\nok: [a]\n")
    assert _failures(log) == "(no failed task in the log)"
