"""The ``pixcrawler`` command: config check/show/queues and the verify subcommand.

Most cases call :func:`pixcrawler.cli.main` in process (fast); a few run the installed
entry point as an operator or Ansible would, to prove the wiring and that nothing
secret reaches a terminal.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pixcrawler import cli
from pixcrawler.celery_core import config
from pixcrawler.celery_core.queues import QUEUES
from tests.support.harness import free_port

ENTRY_POINT = Path(sys.executable).parent / "pixcrawler"


@pytest.fixture(autouse=True)
def operator_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PixCrawler variables and no installed env file, as on a fresh host.

    conftest exports the session's settings into this process; the CLI must be tested
    on what it reads itself. PIXCRAWLER_ENV_FILE is set then removed so that monkeypatch
    restores its absence even if a command exports it.
    """
    for key in [k for k in os.environ if k.startswith("PIXCRAWLER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIXCRAWLER_ENV_FILE", "unset")
    monkeypatch.delenv("PIXCRAWLER_ENV_FILE")
    monkeypatch.setattr(config, "DEFAULT_ENV_FILE", tmp_path / "not-installed.env")


def env_file(path: Path, **values: str) -> Path:
    path.write_text("".join(f"PIXCRAWLER_CELERY_{k.upper()}={v}\n" for k, v in values.items()))
    return path


def run_entry_point(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = (
        [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [sys.executable, "-m", "pixcrawler.cli"]
    )
    shell = {k: v for k, v in os.environ.items() if not k.startswith("PIXCRAWLER_")}
    shell.update(env or {})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=shell, timeout=60, check=False
    )


# --- config check ---------------------------------------------------------------------------------


def test_config_check_accepts_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = env_file(tmp_path / "good.env", worker_concurrency="8")

    assert cli.main(["config", "check", "--env-file", str(good)]) == 0
    assert capsys.readouterr().out == "configuration OK\n"


def test_config_check_names_every_bad_variable_and_no_value(tmp_path: Path) -> None:
    secret = "pw-" + secrets.token_hex(8)
    bad = env_file(
        tmp_path / "bad.env",
        broker_url=f"amqp://:{secret}@127.0.0.1/0",
        worker_concurrency="lots",
        result_expire="60",
    )

    proc = run_entry_point("config", "check", "--env-file", str(bad))

    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    for name in (
        "PIXCRAWLER_CELERY_BROKER_URL",
        "PIXCRAWLER_CELERY_WORKER_CONCURRENCY",
        "PIXCRAWLER_CELERY_RESULT_EXPIRE",
    ):
        assert name in proc.stderr
    assert "Traceback" not in proc.stderr
    assert secret not in proc.stderr


def test_env_file_option_wins_over_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = env_file(tmp_path / "good.env", worker_concurrency="8")
    bad = env_file(tmp_path / "bad.env", worker_concurrency="0")
    monkeypatch.setenv("PIXCRAWLER_ENV_FILE", str(bad))

    assert cli.main(["config", "check", "--env-file", str(good)]) == 0
    with pytest.raises(SystemExit) as exited:
        cli.main(["config", "check"])

    assert exited.value.code == 2
    assert "PIXCRAWLER_CELERY_WORKER_CONCURRENCY" in capsys.readouterr().err


def test_installed_env_file_is_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = env_file(
        tmp_path / "pixcrawler.env", task_time_limit="10", task_soft_time_limit="20"
    )
    monkeypatch.setattr(config, "DEFAULT_ENV_FILE", installed)

    with pytest.raises(SystemExit) as exited:
        cli.main(["config", "check"])

    assert exited.value.code == 2
    assert "PIXCRAWLER_CELERY_TASK_SOFT_TIME_LIMIT" in capsys.readouterr().err


def test_missing_env_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["config", "check", "--env-file", str(tmp_path / "absent.env")])

    assert exited.value.code == 2
    assert "PIXCRAWLER_ENV_FILE" in capsys.readouterr().err


# --- config show ----------------------------------------------------------------------------------


def test_config_show_never_prints_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker_pw, backend_pw, sentinel_pw = (secrets.token_hex(10) for _ in range(3))
    config = env_file(
        tmp_path / "e.env",
        broker_url=f"redis://:{broker_pw}@10.0.0.5:6379/0",
        result_backend=f"redis://app:{backend_pw}@10.0.0.5:6379/1",
        sentinel_password=sentinel_pw,
        worker_concurrency="7",
    )

    assert cli.main(["config", "show", "--env-file", str(config)]) == 0
    text = capsys.readouterr().out
    assert cli.main(["config", "show", "--json", "--env-file", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)

    for secret in (broker_pw, backend_pw, sentinel_pw):
        assert secret not in text
        assert secret not in json.dumps(shown)
    assert "PIXCRAWLER_CELERY_WORKER_CONCURRENCY=7" in text.splitlines()
    assert shown["PIXCRAWLER_CELERY_WORKER_CONCURRENCY"] == 7
    assert shown["PIXCRAWLER_CELERY_BROKER_URL"] == "redis://:***@10.0.0.5:6379/0"
    assert shown["PIXCRAWLER_CELERY_RESULT_BACKEND"] == "redis://app:***@10.0.0.5:6379/1"
    assert shown["PIXCRAWLER_CELERY_SENTINEL_PASSWORD"] == "***"


def test_config_show_from_the_entry_point_reads_the_variable(tmp_path: Path) -> None:
    secret = secrets.token_hex(10)
    config = env_file(tmp_path / "e.env", broker_url=f"redis://:{secret}@127.0.0.1:6390/0")

    proc = run_entry_point("config", "show", env={"PIXCRAWLER_ENV_FILE": str(config)})

    assert proc.returncode == 0, proc.stderr
    assert "PIXCRAWLER_CELERY_BROKER_URL=redis://:***@127.0.0.1:6390/0" in proc.stdout
    assert secret not in proc.stdout + proc.stderr


# --- config queues --------------------------------------------------------------------------------


def test_config_queues_json_is_the_queue_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "queues", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)

    assert [
        (q["name"], q["redis_priority"], tuple(q["patterns"]), q["description"])
        for q in table["queues"]
    ] == [(q.name, q.redis_priority, q.patterns, q.description) for q in QUEUES]
    assert table["default_queue"] in [q.name for q in QUEUES]


def test_config_queues_text_lists_every_queue(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "queues"]) == 0
    rows = capsys.readouterr().out.splitlines()

    listed = {row.split()[0]: row.split()[1] for row in rows[1:] if not row.startswith("(")}
    assert listed == {q.name: str(q.redis_priority) for q in QUEUES}


# --- verify and usage ---------------------------------------------------------------------


def test_verify_subcommand_runs_the_checks(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: Redis is "down"
    config = env_file(
        tmp_path / "e.env",
        broker_url=f"redis://127.0.0.1:{closed}/0",
        result_backend=f"redis://127.0.0.1:{closed}/1",
    )

    proc = run_entry_point("verify", "--env-file", str(config), "--json", "--timeout", "5")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = {c["name"]: c["status"] for c in json.loads(proc.stdout)["checks"]}
    assert checks["settings"] == "PASS"
    assert checks["broker"] == "FAIL"
    assert checks["crawl_validate_chain"] == "SKIP"


@pytest.mark.parametrize(
    "argv", [[], ["config"], ["config", "frobnicate"], ["verify", "--timeout", "-1"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)

    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err
