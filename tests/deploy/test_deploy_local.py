"""The real dev deploy onto this machine: converge, verify, converge again with no change.

This changes the machine (installs redis-server, supervisor, /opt/pixcrawler, starts the
services), so it is marked ``ansible`` and runs only as root on Debian. Where systemd is
not PID 1 (this project's CI machines) it exercises the supervisord path end to end; the
systemd path is proven by the Molecule scenarios on systemd test hosts.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ansible_tools import clean_env, tool
from tests.support.paths import ANSIBLE_DIR
from tests.support.paths import REPO as ROOT

yaml = pytest.importorskip("yaml")

pytestmark = [
    pytest.mark.ansible,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.geteuid() != 0 or not Path("/etc/debian_version").exists(),
        reason="the local deploy needs root on Debian",
    ),
]

DEV = yaml.safe_load((ROOT / "env" / "dev.yml").read_text())
SECRETS = [
    DEV["pixcrawler_redis_app_password"],
    DEV["pixcrawler_redis_flower_password"],
    DEV["pixcrawler_flower_basic_auth_password"],
]
RECAP = re.compile(
    r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


@dataclass
class Run:
    returncode: int
    output: str

    def recap(self) -> tuple[int, int, int, int]:
        match = RECAP.search(self.output)
        assert match, self.output[-3000:]
        ok, changed, unreachable, failed = (int(g) for g in match.groups())
        return ok, changed, unreachable, failed

    def changed_tasks(self) -> list[str]:
        tasks, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line
            elif line.startswith("changed:"):
                tasks.append(current)
        return tasks


def deploy(*extra: str) -> Run:
    result = subprocess.run(
        [str(tool("ansible-playbook")), "site.yml", "-e", "env=dev", *extra],
        cwd=ANSIBLE_DIR,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    return Run(result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    first = deploy()
    assert first.returncode == 0, first.output[-6000:]
    return {"first": first, "second": deploy(), "check": deploy("--check", "--diff")}


def test_first_deploy_converges_and_verifies(runs: dict[str, Run]) -> None:
    first = runs["first"]
    assert first.recap()[3] == 0
    assert "All checks passed on localhost." in first.output
    for check in ("broker", "result_backend", "crawl_validate_chain"):
        assert re.search(rf"PASS\s+{check}\b", first.output), check


def test_second_deploy_changes_nothing(runs: dict[str, Run]) -> None:
    second = runs["second"]
    assert second.returncode == 0, second.output[-4000:]
    assert second.recap()[1] == 0, second.changed_tasks()
    assert "All checks passed on localhost." in second.output


def test_check_diff_runs_clean(runs: dict[str, Run]) -> None:
    check = runs["check"]
    assert check.returncode == 0, check.output[-4000:]
    assert check.recap()[1] == 0, check.changed_tasks()


def test_no_secret_in_any_output(runs: dict[str, Run]) -> None:
    for name, run in runs.items():
        for secret in SECRETS:
            assert secret not in run.output, f"a password appears in the {name} run's output"


def test_no_secret_on_any_command_line(runs: dict[str, Run]) -> None:
    seen = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        seen += "pixcrawler.celery_core.app" in text
        for secret in SECRETS:
            assert secret not in text, f"a password is on the command line of {cmdline.parent}"
    assert seen >= 6  # four workers, Flower and beat are running


def test_settings_files_are_private(runs: dict[str, Run]) -> None:
    import grp
    import pwd

    owners = {
        "/etc/pixcrawler/pixcrawler.env": "pixcrawler",
        "/etc/pixcrawler-flower/flower.env": "pixcrawler-flower",
    }
    for path, group in owners.items():
        st = Path(path).stat()
        assert st.st_mode & 0o777 == 0o640, path
        assert pwd.getpwuid(st.st_uid).pw_name == "root"
        assert grp.getgrgid(st.st_gid).gr_name == group, path
    assert not Path("/etc/pixcrawler/flower.env").exists()


def test_workers_stop_warm_under_supervisord(runs: dict[str, Run]) -> None:
    if not Path("/etc/supervisor/conf.d/pixcrawler-worker-crawl.conf").exists():
        pytest.skip("this host uses systemd (the Molecule scenarios cover it)")
    hard_limit = 1800  # the package default; env/dev.yml does not change it
    for conf in Path("/etc/supervisor/conf.d").glob("pixcrawler-worker-*.conf"):
        parser = configparser.RawConfigParser()
        parser.read(conf)
        program = parser[parser.sections()[0]]
        assert program["stopsignal"] == "TERM"
        assert program["stopasgroup"] == "false"
        assert program["killasgroup"] == "true"
        assert int(program["stopwaitsecs"]) > hard_limit
        queue = conf.stem.removeprefix("pixcrawler-worker-")
        env = Path(f"/etc/pixcrawler/worker-{queue}.env").read_text()
        assert "CELERY_POOL=" in env
        assert "CELERY_CONCURRENCY=" in env


def redis_cli(user: str, password: str, *command: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "--user", user, "--no-auth-warning", *command],
        env={**clean_env(), "REDISCLI_AUTH": password},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


def test_redis_is_a_locked_down_broker(runs: dict[str, Run]) -> None:
    app, flower = DEV["pixcrawler_redis_app_password"], DEV["pixcrawler_redis_flower_password"]
    assert redis_cli("pixcrawler", app, "PING") == "PONG"
    # The app user cannot reconfigure or wipe the broker (@dangerous is denied).
    assert "NOPERM" in redis_cli("pixcrawler", app, "CONFIG", "GET", "maxmemory-policy")
    assert "NOPERM" in redis_cli("pixcrawler", app, "FLUSHALL")
    # Flower reads but cannot publish tasks.
    assert redis_cli("flower", flower, "LLEN", "crawl").isdigit()
    assert "NOPERM" in redis_cli("flower", flower, "LPUSH", "crawl", "x")
    # The default user is off.
    assert "PONG" not in redis_cli("default", "", "PING")
    conf = Path("/etc/redis/redis.conf").read_text()
    for line in ("maxmemory-policy noeviction", "appendonly yes", "appendfsync everysec"):
        assert line in conf
    assert "protected-mode yes" in conf


CLIENT = r"""
import json, sys, time
from pixcrawler.celery_core.app import get_celery_app
from pixcrawler.celery_core.queues import QUEUE_NAMES

app = get_celery_app()
sent = []
print("publishing", flush=True)
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    for queue in QUEUE_NAMES:
        sent.append(app.send_task("celery_core.health_check", queue=queue))
    if sys.stdin in __import__("select").select([sys.stdin], [], [], 0.05)[0]:
        sys.stdin.readline()
        break
done = {}
for result in sent:
    value = result.get(timeout=300)
    done[value["status"]] = done.get(value["status"], 0) + 1
print(json.dumps({"sent": len(sent), "statuses": done}), flush=True)
"""


def test_warm_restart_of_every_worker_loses_no_task(runs: dict[str, Run]) -> None:
    """Tasks keep arriving while every worker restarts as the deploy's handler does it."""
    if not Path("/etc/supervisor/conf.d/pixcrawler-worker-crawl.conf").exists():
        pytest.skip("this host uses systemd (the Molecule scenarios cover it)")
    client = subprocess.Popen(
        [
            "runuser",
            "-u",
            "pixcrawler",
            "--",
            "/bin/sh",
            "-c",
            "set -a; . /etc/pixcrawler/pixcrawler.env; set +a; "
            'exec /opt/pixcrawler/venv/bin/python -c "$0"',
            CLIENT,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert client.stdin is not None
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "publishing"
    programs = [p.stem for p in Path("/etc/supervisor/conf.d").glob("pixcrawler-worker-*.conf")]
    for program in programs:
        restart = subprocess.run(
            ["supervisorctl", "restart", program], capture_output=True, text=True, check=False
        )
        assert "started" in restart.stdout, restart.stdout + restart.stderr
    client.stdin.write("stop\n")
    client.stdin.flush()
    report = json.loads(client.stdout.readline())
    assert client.wait(timeout=60) == 0
    assert report["statuses"] == {"success": report["sent"]}
    assert report["sent"] > 100
