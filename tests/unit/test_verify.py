"""The verification script's pieces, in process: argument errors, env-file precedence, secret
scrubbing, error descriptions, exit codes, the probe image, the serve-address refusal.

The script run against real Redis and workers is ``tests/integration/test_verify.py``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from ipaddress import ip_address
from pathlib import Path

import pytest
import redis.exceptions

from pixcrawler import errortext, image_server, verify
from pixcrawler.celery_core import scrub
from pixcrawler.celery_core.config import load_settings, resolve_env_file
from pixcrawler.storage.local import LocalStore


def test_unknown_queue_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        verify.main(["--queues", "crawl,bogus"])

    assert exited.value.code == 2
    assert "bogus" in capsys.readouterr().err


def test_env_file_precedence(tmp_path: Path) -> None:
    installed = tmp_path / "installed.env"
    from_var = {"PIXCRAWLER_ENV_FILE": "/from/var.env"}

    assert resolve_env_file("/cli.env", from_var, installed) == Path("/cli.env")
    assert resolve_env_file(None, from_var, installed) == Path("/from/var.env")
    assert resolve_env_file(None, {}, installed) is None
    installed.write_text("")
    assert resolve_env_file(None, {}, installed) == installed


def test_scrub_masks_every_form_of_the_passwords() -> None:
    settings = load_settings(
        {
            "PIXCRAWLER_CELERY_BROKER_URL": "redis://:p%40ss-word@127.0.0.1:6379/0",
            "PIXCRAWLER_CELERY_RESULT_BACKEND": "redis://app:other-pw@127.0.0.1:6379/1",
        }
    )
    found = scrub.secrets_of(settings)

    text = scrub.scrub("p@ss-word / p%40ss-word / other-pw / redis://app:x@h/0", found)

    assert "p@ss" not in text
    assert "p%40ss" not in text
    assert "other-pw" not in text
    assert "redis://app:***@h/0" in text


def test_describe_error_names_the_kind_of_failure() -> None:
    auth = redis.exceptions.AuthenticationError("invalid username-password pair")
    wrapped = RuntimeError("publish failed")
    wrapped.__cause__ = redis.exceptions.TimeoutError("Timeout reading from socket")

    assert errortext.describe_error(auth).startswith("authentication failed")
    assert errortext.describe_error(wrapped, 2).startswith("no answer within 2 s")
    assert errortext.describe_error(ConnectionRefusedError("refused")).startswith("cannot connect")


def test_exit_code_strict_counts_skips() -> None:
    passed = verify.Check("a", "PASS", 1, "")
    skipped = verify.Check("b", "SKIP", 0, "")

    assert verify._exit_code([passed, skipped], strict=False) == 0
    assert verify._exit_code([passed, skipped], strict=True) == 1
    assert verify._exit_code([passed, verify.Check("c", "FAIL", 0, "")], strict=False) == 1


def test_exit_code_strict_ignores_a_check_that_does_not_apply() -> None:
    """No Sentinel to ask with a redis:// broker: that SKIP is no gap in the proof."""
    passed = verify.Check("a", "PASS", 1, "")
    not_sentinel = verify.Check(verify.SENTINEL_CHECK, "SKIP", 0, "")
    failed_sentinel = verify.Check(verify.SENTINEL_CHECK, "FAIL", 0, "")

    assert verify._exit_code([passed, not_sentinel], strict=True) == 0
    assert verify._exit_code([passed, failed_sentinel], strict=False) == 1


@pytest.mark.parametrize("formats", ["PNG,JPEG", "JPEG", "GIF", "WEBP"])
def test_probe_image_is_new_each_run_and_acceptable(formats: str) -> None:
    """An image already stored or validated would prove nothing: each run makes a new one."""
    from pixcrawler.validator.images import inspect_image

    settings = load_settings(
        {
            "PIXCRAWLER_CELERY_VALIDATION_MIN_WIDTH": "100",
            "PIXCRAWLER_CELERY_VALIDATION_ALLOWED_FORMATS": formats,
        }
    )
    first, mime = image_server.probe_image(settings)
    second, _ = image_server.probe_image(settings)

    assert hashlib.sha256(first).digest() != hashlib.sha256(second).digest()
    assert mime.startswith("image/")
    for body in (first, second):
        info = inspect_image(body, settings)
        assert (info.format, info.width) == (formats.split(",")[0], 100)


def test_storage_probe_writes_reads_and_deletes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")

    detail = verify.probe_store(store, tmp_path / "store")

    assert "wrote, read and deleted" in detail
    assert [e for e in store.entries() if not e.temporary] == []


def test_storage_check_skips_for_another_user(tmp_path: Path) -> None:
    """Root's probe would leave a shard directory the service user cannot write into."""
    owned = tmp_path / "images"
    owned.mkdir()
    assert verify.store_refusal(owned) is None  # this user's own directory: tested
    assert verify.store_refusal(owned / "not-yet") is None  # created by this user later
    if os.geteuid() == 0:  # as scripts/test runs: give the directory to someone else
        os.chown(owned, 4321, 4321)
        others, owner = owned, "uid 4321"
    else:
        others, owner = Path("/"), "root"
    refusal = verify.store_refusal(others)
    assert refusal is not None
    assert "not run as the service user" in refusal
    assert f"belongs to {owner}" in refusal


def test_loopback_image_is_skipped_when_crawl_workers_are_elsewhere() -> None:
    settings = load_settings({"PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8"})
    options = verify.build_parser().parse_args([])
    checker = verify.Verifier(
        settings,
        verify.Options(
            queues=options.queues,
            timeout=5,
            inspect_timeout=1,
            serve_address="127.0.0.1",
            image_url=None,
            strict=False,
            as_json=True,
        ),
        emit=lambda check: None,
        started=0,
    )
    loopback = ip_address("127.0.0.1")
    here = f"celery@{socket.gethostname()}"

    remote = checker.serve_refusal(loopback, {"crawl": [here, "celery@crawler-2.example"]})
    assert remote is not None
    assert "celery@crawler-2.example" in remote
    assert "--image-url" in remote
    assert checker.serve_refusal(loopback, {"crawl": [here, "w1@localhost"]}) is None
    refused = checker.serve_refusal(ip_address("10.1.2.3"), {"crawl": [here]})
    assert refused is not None
    assert "PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS" in refused
