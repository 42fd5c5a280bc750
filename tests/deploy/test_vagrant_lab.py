"""The Vagrant lab (``Vagrantfile``, docs/LAB.md), brought up for real with Vagrant.

``-m vagrant`` (scripts/test-vagrant): ``vagrant up --provider=docker`` over the image that
testhosts/setup-vagrant-lab builds, so the four machines are provisioned by ansible/site.yml
over SSH as VMs would be; the checks then log in with ``vagrant ssh``. Whatever happens,
the lab is destroyed at the end and no lab container may be left. If the lab cannot come
up, the tests FAIL: a skipped lab would look like a working one.

The ``vagrant validate`` checks of the libvirt and VirtualBox paths need only the vagrant
package (installed by the setup script's --vagrant-only mode) and run in the normal suite.
PIXCRAWLER_LAB_LOGS keeps the logs (default: a temp dir); the up time is written there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

SETUP = REPO / "testhosts" / "setup-vagrant-lab"
LOGS = Path(os.environ.get("PIXCRAWLER_LAB_LOGS") or tempfile.mkdtemp(prefix="vagrant-lab-"))
MACHINES = ("redis", "worker1", "worker2", "monitor")
LAB_NET = "192.168.56"
LAB_IPS = {"redis": f"{LAB_NET}.10", "worker1": f"{LAB_NET}.11", "worker2": f"{LAB_NET}.12"}
# The module's lab fixture (setup script, `vagrant up`, `vagrant destroy`) runs inside the
# first and last lab test; pytest-timeout counts it, so these tests get a generous bound.
LAB_TIMEOUT = 3600
VERIFY = (
    "sudo runuser -u pixcrawler -- /opt/pixcrawler/venv/bin/python"
    " /opt/pixcrawler/bin/test_celery_redis.py --env-file /etc/pixcrawler/pixcrawler.env"
    " --json --strict --timeout 60"
)


def _env(**extra: str) -> dict[str, str]:
    """The default lab (four machines, env=dev) whatever the caller's shell selects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXCRAWLER_LAB")}
    env.pop("VAGRANT_DEFAULT_PROVIDER", None)
    return {**env, "VAGRANT_CWD": str(REPO), "NO_COLOR": "1", **extra}


def _run(
    argv: list[str], timeout: float, log: Path | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        cwd=REPO,
        env=_env(**(extra or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if log is not None:
        log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _docker_names(*argv: str) -> list[str]:
    out = subprocess.run(
        ["docker", *argv, "--format", "{{.Name}}" if argv[0] == "network" else "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return out.split()


def _lab_containers() -> list[str]:
    return _docker_names("ps", "-a", "--filter", "name=^pxc-lab-")


def _lab_networks() -> list[str]:
    return _docker_names("network", "ls", "--filter", f"name=vagrant_network_{LAB_NET}")


def _destroy() -> subprocess.CompletedProcess[str]:
    return _run(["vagrant", "destroy", "-f"], timeout=900, log=LOGS / "destroy.log")


@pytest.fixture(scope="session")
def vagrant_installed() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    proc = _run([str(SETUP), "--vagrant-only"], timeout=900, log=LOGS / "setup-vagrant.log")
    if proc.returncode != 0:
        pytest.fail(f"vagrant could not be installed:\n{_tail(proc.stderr)}")


@dataclass(frozen=True)
class Lab:
    up_output: str
    up_seconds: float


# Module scope: in the full suite the lab is gone before the next test file starts.
@pytest.fixture(scope="module")
def lab(vagrant_installed: None) -> Iterator[Lab]:
    proc = _run([str(SETUP)], timeout=1800, log=LOGS / "setup.log")
    if proc.returncode != 0:
        pytest.fail(f"testhosts/setup-vagrant-lab failed:\n{_tail(proc.stderr)}")
    # A lab left by an interrupted run would make `up` a mere provision of old machines;
    # a single-machine lab is only known to the Vagrantfile in single mode.
    _run(["vagrant", "destroy", "-f"], timeout=900, extra={"PIXCRAWLER_LAB": "single"})
    _destroy()
    try:
        start = time.monotonic()
        up = _run(["vagrant", "up", "--provider=docker"], timeout=3600, log=LOGS / "up.log")
        seconds = time.monotonic() - start
        (LOGS / "timings.txt").write_text(f"vagrant up --provider=docker: {seconds:.0f} s\n")
        print(f"\nvagrant up --provider=docker: {seconds:.0f} s (logs: {LOGS})")
        if up.returncode != 0:
            pytest.fail(
                f"vagrant up failed (exit {up.returncode}; {LOGS / 'up.log'}):\n"
                f"{_tail(up.stdout)}\n{_tail(up.stderr, 20)}"
            )
        yield Lab(up_output=up.stdout, up_seconds=seconds)
    finally:
        destroyed = _destroy()
        left = _lab_containers() + _lab_networks()
        assert destroyed.returncode == 0, f"vagrant destroy -f: {_tail(destroyed.stderr, 20)}"
        assert left == [], f"lab containers/networks left after vagrant destroy -f: {left}"


def _ssh(machine: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _run(["vagrant", "ssh", machine, "-c", command, "--", "-q"], timeout=timeout)


def _verify(machine: str, queues: str) -> dict[str, object]:
    """The deployment's verification script on one machine; its JSON report."""
    command = f"{VERIFY} --queues {queues} --serve-address {LAB_IPS[machine]}"
    proc = _ssh(machine, command)
    try:
        report: dict[str, object] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"no JSON from the verification script on {machine} (exit {proc.returncode}):"
            f"\n{_tail(proc.stdout)}\n{_tail(proc.stderr, 20)}"
        )
    report["exit_code"] = proc.returncode
    return report


def _failed_checks(report: dict[str, object]) -> list[object]:
    checks = report.get("checks")
    assert isinstance(checks, list), f"no checks in the report: {report}"
    assert checks, f"no checks in the report: {report}"
    # The sentinel check does not apply to the lab's redis:// broker (SKIP, not required).
    return [
        c
        for c in checks
        if not isinstance(c, dict)
        or (c.get("status") != "PASS" and (c.get("name"), c.get("status")) != ("sentinel", "SKIP"))
    ]


# --- the docker lab -------------------------------------------------------------------


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
def test_four_machines_are_running(lab: Lab) -> None:
    proc = _run(["vagrant", "status", "--machine-readable"], timeout=120)
    states = {
        parts[1]: parts[3]
        for parts in (line.split(",") for line in proc.stdout.splitlines())
        if len(parts) >= 4 and parts[2] == "state"
    }
    assert states == dict.fromkeys(MACHINES, "running"), proc.stdout
    assert sorted(_lab_containers()) == sorted(f"pxc-lab-{m}" for m in MACHINES)


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
def test_provisioning_skipped_kernel_settings_with_a_message(lab: Lab) -> None:
    # Only the redis machine tunes the kernel; in a container the role must say why not.
    assert "Skipping vm.overcommit_memory" in lab.up_output
    assert "shares its kernel" in lab.up_output
    assert "All checks passed on worker1" in lab.up_output
    assert "All checks passed on worker2" in lab.up_output


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
def test_provisioning_output_shows_no_secret(lab: Lab) -> None:
    # dev's passwords and S3 secret keys are in env/dev.yml; the roles must still keep them
    # out of the output.
    env_dev = (REPO / "env" / "dev.yml").read_text()
    secrets = re.findall(
        r"^pixcrawler_\w+_(?:password|secret_access_key): (\S+)$", env_dev, flags=re.M
    )
    assert len(secrets) == 5, secrets
    leaked = [s for s in secrets if s in lab.up_output]
    assert leaked == [], "a dev password appears in the provisioning output"


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
@pytest.mark.parametrize("machine", ["worker1", "worker2"])
def test_verification_passes_on_each_worker(lab: Lab, machine: str) -> None:
    report = _verify(machine, "crawl,validation,default,maintenance")
    assert report["exit_code"] == 0, report
    assert report.get("ok") is True, report
    assert _failed_checks(report) == []
    # The workers share one store: the object store on the redis machine, over S3.
    checks = report["checks"]
    assert isinstance(checks, list)
    storage = [c for c in checks if isinstance(c, dict) and c.get("name") == "storage"]
    assert storage, report
    assert str(storage[0].get("detail", "")).startswith("s3://"), storage


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
def test_worker_unit_restarts_and_consumes_again(lab: Lab) -> None:
    unit = "pixcrawler-worker@crawl"
    show = f"systemctl show -p MainPID --value {unit}"
    before = _ssh("worker1", show).stdout.strip()
    assert before.isdigit(), f"{unit} has no main process: {before!r}"
    assert before != "0", f"{unit} is not running"

    restart = _ssh("worker1", f"sudo systemctl restart {unit}")
    assert restart.returncode == 0, restart.stderr

    after = _ssh("worker1", f"systemctl is-active {unit}; {show}").stdout.split()
    assert after[0] == "active", after
    assert after[1] != before, "the unit kept its main process: nothing was restarted"

    # The crawl queue has consumers only on worker1: a passing crawl->validate chain and a
    # task through crawl are served by the restarted worker. It may still be connecting.
    for _attempt in range(3):
        report = _verify("worker1", "crawl,validation")
        if report["exit_code"] == 0:
            break
    assert report.get("ok") is True, report
    assert _failed_checks(report) == []


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
def test_redis_refuses_an_unauthenticated_client_from_a_worker(lab: Lab) -> None:
    probe = (
        "import redis, sys\n"
        f"r = redis.Redis(host='{LAB_IPS['redis']}', port=6379, socket_timeout=10)\n"
        "try:\n"
        "    r.ping()\n"
        "except redis.exceptions.AuthenticationError as exc:\n"
        "    print('REFUSED', exc)\n"
        "    sys.exit(0)\n"
        "except redis.exceptions.ConnectionError as exc:\n"
        "    print('UNREACHABLE', exc)\n"
        "    sys.exit(3)\n"
        "print('ACCEPTED')\n"
        "sys.exit(4)\n"
    )
    proc = _ssh("worker2", f"/opt/pixcrawler/venv/bin/python -c {shlex.quote(probe)}")
    assert proc.stdout.startswith("REFUSED"), f"exit {proc.returncode}: {proc.stdout} {proc.stderr}"
    assert proc.returncode == 0, proc.stderr


@pytest.mark.vagrant
@pytest.mark.timeout(LAB_TIMEOUT)
def test_object_store_refuses_an_anonymous_client_from_a_worker(lab: Lab) -> None:
    probe = (
        "import sys, urllib.error, urllib.request\n"
        f"url = 'http://{LAB_IPS['redis']}:8333/pixcrawler-images?list-type=2'\n"
        "try:\n"
        "    urllib.request.urlopen(url, timeout=10)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print('REFUSED' if exc.code == 403 else f'HTTP {exc.code}')\n"
        "    sys.exit(0 if exc.code == 403 else 4)\n"
        "except OSError as exc:\n"
        "    print('UNREACHABLE', exc)\n"
        "    sys.exit(3)\n"
        "print('ACCEPTED')\n"
        "sys.exit(4)\n"
    )
    proc = _ssh("worker2", f"/opt/pixcrawler/venv/bin/python -c {shlex.quote(probe)}")
    assert proc.stdout.startswith("REFUSED"), f"exit {proc.returncode}: {proc.stdout} {proc.stderr}"


# --- the VM paths, without VMs -----------------------------------------------------------


def _validate(provider: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "VAGRANT_DEFAULT_PROVIDER": provider,
        # Its own data dir: validate must not touch a running lab's state.
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"),
        **extra,
    }
    return _run(["vagrant", "validate"], timeout=300, extra=env)


@pytest.mark.parametrize(
    "mode", [{}, {"PIXCRAWLER_LAB": "single"}, {"PIXCRAWLER_LAB_ENV": "staging"}], ids=str
)
def test_vagrantfile_validates_for_libvirt(
    vagrant_installed: None, tmp_path: Path, mode: dict[str, str]
) -> None:
    proc = _validate("libvirt", tmp_path, **mode)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


def test_vagrantfile_validates_for_virtualbox(vagrant_installed: None, tmp_path: Path) -> None:
    # VirtualBox cannot be installed here; Vagrant only needs VBoxManage to report a
    # version to load its provider, then validates the provider block for real.
    fake = tmp_path / "bin" / "VBoxManage"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && echo 7.0.14r161095\nexit 0\n')
    fake.chmod(0o755)
    proc = _validate("virtualbox", tmp_path, PATH=f"{fake.parent}:{os.environ['PATH']}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


def test_vagrantfile_rejects_an_unknown_mode(vagrant_installed: None, tmp_path: Path) -> None:
    proc = _validate("libvirt", tmp_path, PIXCRAWLER_LAB="tiny")
    assert proc.returncode != 0
    assert "PIXCRAWLER_LAB must be multi or single" in proc.stdout + proc.stderr
