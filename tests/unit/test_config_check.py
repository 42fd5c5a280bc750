"""``pixcrawler config check`` refuses every value a worker, beat or a retry would die of.

Each case below parsed and passed the check before, then failed at runtime: beat and
every ETA on an unknown time zone, a worker with OverflowError on a huge duration or
socket timeout, every validation on a format name Pillow does not know or a retention
Redis refuses, and workers waiting on localhost for an empty broker URL. The check must
now fail, naming the variable. The second half calls the dry run alone on settings that
skipped the field checks, so the layer that builds the worker's objects is tested on
its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pixcrawler import cli
from pixcrawler.celery_core import config
from pixcrawler.celery_core.config import CelerySettings, SettingsError, load_settings
from pixcrawler.celery_core.dryrun import worker_problems

P = "PIXCRAWLER_CELERY_"
SECRET = "Sup3r-secret-pw"
HUGE = str(10**14)  # seconds: past what timedelta, datetime or a socket timeout holds


@pytest.fixture(autouse=True)
def operator_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the env file under test counts (conftest exports the session's settings)."""
    for key in [k for k in os.environ if k.startswith("PIXCRAWLER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(config, "DEFAULT_ENV_FILE", tmp_path / "not-installed.env")


def check(tmp_path: Path, *flags: str, **values: str) -> int:
    """Run ``pixcrawler config check`` on an env file; its exit code."""
    env_file = tmp_path / "pixcrawler.env"
    env_file.write_text("".join(f"{P}{k.upper()}={v}\n" for k, v in values.items()))
    try:
        return cli.main(["config", "check", *flags, "--env-file", str(env_file)])
    except SystemExit as exited:
        return int(exited.code or 0)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "TIMEZONE"),
        ({"timezone": "../../etc/passwd"}, "TIMEZONE"),
        ({"result_expires": HUGE}, "RESULT_EXPIRES"),
        ({"redis_socket_timeout": HUGE}, "REDIS_SOCKET_TIMEOUT"),
        ({"redis_connect_timeout": "inf"}, "REDIS_CONNECT_TIMEOUT"),
        ({"crawl_read_timeout": HUGE}, "CRAWL_READ_TIMEOUT"),
        ({"crawl_connect_timeout": HUGE}, "CRAWL_CONNECT_TIMEOUT"),
        ({"crawl_total_timeout": "inf"}, "CRAWL_TOTAL_TIMEOUT"),
        ({"cleanup_interval": HUGE}, "CLEANUP_INTERVAL"),
        (
            {"task_retry_backoff_max": HUGE, "visibility_timeout": HUGE + "0"},
            "TASK_RETRY_BACKOFF_MAX",
        ),
        ({"validation_allowed_formats": "JPEG,JPG"}, "VALIDATION_ALLOWED_FORMATS"),
        ({"validation_allowed_formats": "PNG,SVG"}, "VALIDATION_ALLOWED_FORMATS"),
        ({"broker_url": ""}, "BROKER_URL"),
        ({"result_backend": '""'}, "RESULT_BACKEND"),
        ({"storage_retention_days": "0.000001"}, "STORAGE_RETENTION_DAYS"),
        ({"storage_retention_days": "1e12"}, "STORAGE_RETENTION_DAYS"),
        ({"storage_retention_days": "inf"}, "STORAGE_RETENTION_DAYS"),
    ],
)
def test_config_check_refuses_what_a_worker_dies_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: dict[str, str], variable: str
) -> None:
    code = check(tmp_path, **values)
    err = capsys.readouterr().err

    assert code == 2, err
    assert f"{P}{variable}:" in err
    assert "Traceback" not in err


def test_the_message_says_what_to_write_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(tmp_path, validation_allowed_formats="JPG")
    assert "did you mean JPEG?" in capsys.readouterr().err


def test_an_empty_broker_url_never_echoes_the_other_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = check(tmp_path, broker_url="", result_backend=f"redis://:{SECRET}@r.internal/1")
    err = capsys.readouterr().err
    assert code == 2
    assert SECRET not in err


HOST_FILES = {
    "storage_url": "s3://images",
    "storage_s3_endpoint_url": "https://store.internal:8333",
    "storage_s3_access_key_id": "app",
    "storage_s3_secret_access_key": SECRET,
    "storage_s3_ca_bundle": "/etc/pixcrawler/tls/objectstore-ca.crt.absent",
    "broker_url": "rediss://:pw@redis.internal:6380/0",
    "result_backend": "rediss://:pw@redis.internal:6380/1",
    "redis_ssl_ca_certs": "/etc/pixcrawler/tls/redis-ca.crt.absent",
}


def test_files_on_the_host_are_checked_here_unless_the_check_runs_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker host must have its CA bundles; the preflight, on the controller, cannot see
    them (the roles install them later in the run) and says --files-on-host."""
    assert check(tmp_path, **HOST_FILES) == 2
    err = capsys.readouterr().err
    assert f"{P}STORAGE_S3_CA_BUNDLE: file does not exist" in err
    assert f"{P}REDIS_SSL_CA_CERTS: file does not exist" in err

    assert check(tmp_path, "--files-on-host", **HOST_FILES) == 0, capsys.readouterr().err
    assert config.CHECK_FILES_HERE.get() is True, "the switch outlived the check"


def test_preflight_loader_refuses_them_too() -> None:
    """The Ansible preflight calls load_settings(environ) on the rendered values."""
    for variable, value in [("TIMEZONE", "Mars/Base"), ("RESULT_EXPIRES", HUGE)]:
        with pytest.raises(SettingsError) as info:
            load_settings({f"{P}{variable}": value})
        assert [v for v, _ in info.value.problems] == [f"{P}{variable}"]


def test_blank_optional_settings_still_mean_unset(tmp_path: Path) -> None:
    code = check(tmp_path, worker_max_memory_per_child="", timezone="Europe/Berlin")
    assert code == 0


# --- the dry run on its own --------------------------------------------------------------------


def unchecked(**values: object) -> CelerySettings:
    """Settings that skipped the field checks, as a value of a kind nobody listed would."""
    return CelerySettings.model_construct(**{**load_settings({}).model_dump(), **values})


def test_dry_run_accepts_the_defaults() -> None:
    assert worker_problems(load_settings({})) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Base"),
        ("result_expires", 10**14),
        ("redis_socket_timeout", 1e12),
        ("redis_connect_timeout", float("inf")),
        ("crawl_read_timeout", 1e12),
        ("cleanup_interval", 10**13),
        ("task_retry_backoff_max", 10**13),
        ("storage_retention_days", 1e12),
    ],
)
def test_dry_run_names_the_setting_the_worker_would_die_of(field: str, value: object) -> None:
    problems = worker_problems(unchecked(**{field: value}))

    assert problems
    assert {variable for variable, _ in problems} == {config.env_name(field)}
