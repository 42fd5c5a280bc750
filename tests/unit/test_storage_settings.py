"""The image store's settings: STORAGE_URL and STORAGE_S3_*, checked before anything runs.

Each refusal names its variable and never repeats a value (a URL could carry a secret);
the S3 secret is redacted wherever the broker password is. Connectivity is not checked
here: that is the verification's storage check (tests/integration/test_s3_store.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pixcrawler import cli
from pixcrawler.celery_core import config
from pixcrawler.celery_core.config import SettingsError, load_settings
from pixcrawler.celery_core.dryrun import worker_problems
from pixcrawler.celery_core.scrub import scrub, secrets_of
from pixcrawler.storage import open_store
from pixcrawler.storage.local import LocalStore
from pixcrawler.storage.location import FileLocation, S3Location, parse_storage_url
from pixcrawler.storage.s3 import S3Store

P = "PIXCRAWLER_CELERY_"
SECRET = "s3-Secret-Key-0123456789abcdef"
S3 = {
    f"{P}STORAGE_URL": "s3://images/crawl",
    f"{P}STORAGE_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
    f"{P}STORAGE_S3_ACCESS_KEY_ID": "APPKEY",
    f"{P}STORAGE_S3_SECRET_ACCESS_KEY": SECRET,
}


def problems(environ: dict[str, str]) -> dict[str, str]:
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    assert SECRET not in str(info.value)
    return dict(info.value.problems)


def test_the_default_store_is_the_directory_of_storage_dir() -> None:
    assert load_settings({}).storage_location == FileLocation(Path("/var/lib/pixcrawler/images"))
    legacy = load_settings({f"{P}STORAGE_DIR": "/srv/images"})
    assert legacy.storage_location == FileLocation(Path("/srv/images"))
    assert isinstance(open_store(legacy), LocalStore)
    url = load_settings({f"{P}STORAGE_URL": "file:///data/img", f"{P}STORAGE_DIR": "/srv/x"})
    assert url.storage_location == FileLocation(Path("/data/img"))  # the URL wins


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://images", S3Location("images", "")),
        ("s3://images/", S3Location("images", "")),
        ("s3://my.images-1/crawl/2026", S3Location("my.images-1", "crawl/2026")),
        ("s3://images/crawl/", S3Location("images", "crawl")),
        ("file:///var/lib/pixcrawler/images", FileLocation(Path("/var/lib/pixcrawler/images"))),
        ("file://localhost/srv/img", FileLocation(Path("/srv/img"))),
    ],
)
def test_storage_urls(url: str, location: object) -> None:
    assert parse_storage_url(url) == location


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://images", "scheme 'http' is not supported"),
        ("images", "scheme '(none)' is not supported"),
        ("s3://Images", "bucket name must be 3-63 characters"),
        ("s3://im", "bucket name must be 3-63 characters"),
        ("s3://" + "a" * 64, "bucket name must be 3-63 characters"),
        ("s3://-images", "bucket name must be 3-63 characters"),
        ("s3://im_ages", "bucket name must be 3-63 characters"),
        ("s3://im..ages", "must not contain '..'"),
        ("s3://192.168.1.10", "must not look like an IP address"),
        ("s3://xn--images", "prefix or suffix S3 reserves"),
        ("s3://images//crawl", "prefix must not start with '/'"),
        ("s3://images/crawl/../other", "'..' segments"),
        ("s3://images/a//b", "empty, '.' or '..' segments"),
        ("s3://images/a b", "may contain only letters"),
        ("s3://key:secret@images", "must not carry credentials"),
        ("s3://images?x=1", "must not have a query"),
        ("file://host/srv", "file:// URLs name a local directory"),
        ("file:///srv/../etc", "must not contain '..'"),
    ],
)
def test_bad_storage_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_storage_url(url)
    found = problems({f"{P}STORAGE_URL": url})
    assert reason in found[f"{P}STORAGE_URL"]
    assert "secret" not in found[f"{P}STORAGE_URL"]  # the value is never repeated


def test_an_s3_store_needs_the_apps_credentials() -> None:
    found = problems({f"{P}STORAGE_URL": "s3://images"})
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"):
        assert found[f"{P}STORAGE_S3_{name}"] == f"is required with an s3:// {P}STORAGE_URL"
    # A file store ignores them: the Ansible env file may carry S3 settings for later.
    assert load_settings({f"{P}STORAGE_S3_REGION": "eu-west-1"}).storage_s3_region == "eu-west-1"


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("ftp://10.0.0.5:8333", "scheme 'ftp' is not supported"),
        ("http://", "has no host"),
        ("http://10.0.0.5:99999", "is not a valid URL"),
        (f"http://key:{SECRET}@10.0.0.5:8333", "must not carry credentials"),
        ("http://10.0.0.5:8333/images", "the bucket goes in STORAGE_URL"),
    ],
)
def test_bad_endpoints_say_why(endpoint: str, reason: str) -> None:
    found = problems({**S3, f"{P}STORAGE_S3_ENDPOINT_URL": endpoint})
    assert reason in found[f"{P}STORAGE_S3_ENDPOINT_URL"]


def test_a_ca_bundle_must_exist_and_hold_a_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    https = {**S3, f"{P}STORAGE_S3_ENDPOINT_URL": "https://s3.example:8333"}
    found = problems({**https, f"{P}STORAGE_S3_CA_BUNDLE": str(tmp_path / "absent.pem")})
    assert found[f"{P}STORAGE_S3_CA_BUNDLE"] == "file does not exist"

    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    settings = load_settings({**https, f"{P}STORAGE_S3_CA_BUNDLE": str(not_pem)})
    [(variable, reason)] = worker_problems(settings)
    assert variable == f"{P}STORAGE_S3_CA_BUNDLE"
    assert "holds no PEM certificate" in reason

    for key in [k for k in os.environ if k.startswith("PIXCRAWLER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(config, "DEFAULT_ENV_FILE", tmp_path / "not-installed.env")
    env_file = tmp_path / "pixcrawler.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in https.items()))
    assert cli.main(["config", "check", "--env-file", str(env_file)]) == 0
    assert capsys.readouterr().out == "configuration OK\n"


def test_the_s3_store_is_built_without_connecting() -> None:
    """Nothing listens on the endpoint: building the client must not need it."""
    store = open_store(load_settings({**S3, f"{P}STORAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9"}))
    assert isinstance(store, S3Store)
    assert store.location == "s3://images/crawl"
    assert SECRET not in repr(store.options)
    assert worker_problems(load_settings(S3)) == []


def test_the_s3_secret_is_redacted_like_the_broker_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(S3)
    shown = settings.display()
    assert shown[f"{P}STORAGE_S3_SECRET_ACCESS_KEY"] == "***"
    assert shown[f"{P}STORAGE_S3_ACCESS_KEY_ID"] == "APPKEY"  # names the identity, not secret
    assert SECRET not in repr(settings) + str(settings) + json.dumps(shown)
    assert SECRET in secrets_of(settings)
    assert scrub(f"signed with {SECRET}", secrets_of(settings)) == "signed with ***"

    for key in [k for k in os.environ if k.startswith("PIXCRAWLER_")]:
        monkeypatch.delenv(key)
    env_file = tmp_path / "pixcrawler.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in S3.items()))
    for args in (["config", "show"], ["config", "show", "--json"]):
        assert cli.main([*args, "--env-file", str(env_file)]) == 0
        out = capsys.readouterr().out
        assert SECRET not in out
        assert "STORAGE_S3_SECRET_ACCESS_KEY" in out


@pytest.mark.parametrize(
    ("ref", "canonical"),
    [
        (
            "s3://images/crawl/ab/ab" + "0" * 62 + ".png",
            "s3://images/crawl/ab/ab" + "0" * 62 + ".png",
        ),
        ("ab/ab" + "0" * 62 + ".jpg", "s3://images/crawl/ab/ab" + "0" * 62 + ".jpg"),
        ("s3://images/crawl/ab/ab" + "0" * 62 + ".png?x=1", None),
        ("s3://images/crawl/ab/../ab/ab" + "0" * 62 + ".png", None),
        ("s3://images/crawler/ab/ab" + "0" * 62 + ".png", None),
        ("s3://images/ab/ab" + "0" * 62 + ".png", None),
        ("s3://other/crawl/ab/ab" + "0" * 62 + ".png", None),
        ("s3://images/crawl/ac/ab" + "0" * 62 + ".png", None),
        ("/var/lib/pixcrawler/images/ab/ab" + "0" * 62 + ".png", None),
        ("../ab/ab" + "0" * 62 + ".png", None),
    ],
)
def test_s3_references_resolve_only_inside_the_store(ref: str, canonical: str | None) -> None:
    """Pure name checks: a refused reference is never sent to the object store."""
    from pixcrawler.storage import OutsideStore

    store = open_store(load_settings({**S3, f"{P}STORAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9"}))
    if canonical is None:
        with pytest.raises(OutsideStore):
            store.resolve(ref)
    else:
        assert store.resolve(ref) == canonical
