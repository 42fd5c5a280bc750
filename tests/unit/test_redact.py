"""Redaction: what an operator may paste into a ticket never carries a password."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from pixcrawler.celery_core.redact import MASK, redact_url, strip_userinfo


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://pix:hunter2@h:6379/0", "redis://pix:***@h:6379/0"),
        ("redis://hunter2@h:6379/0", "redis://***@h:6379/0"),
        (
            "rediss://pix:hunter2@h:6380/1?ssl_cert_reqs=required",
            "rediss://pix:***@h:6380/1?ssl_cert_reqs=required",
        ),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("rediss://h:6380?note=a@b", "rediss://h:6380?note=a@b"),
        ("rediss://:pw@h:6380/0?note=a@b", "rediss://:***@h:6380/0?note=a@b"),
        ("unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock"),
        (
            "unix:///run/redis.sock?db=0&password=hunter2",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        ("redis://h:6379/0?PASSWORD=hunter2&x=1", "redis://h:6379/0?PASSWORD=***&x=1"),
        (
            "sentinel://:hunter2@s1:26379;sentinel://:hunter2@s2:26379",
            "sentinel://:***@s1:26379;sentinel://:***@s2:26379",
        ),
        (
            "error connecting to redis://:hunter2@h:6379/0 (refused)",
            "error connecting to redis://:***@h:6379/0 (refused)",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "hunter2" not in redact_url(url)


@pytest.mark.parametrize("password", ["p@ss", "a@b@c", "p:ss", "p%40ss", "@", "pass@"])
def test_redact_url_hides_every_character_of_awkward_passwords(password: str) -> None:
    """redis-py and kombu split user info at the LAST '@', so the mask must too."""
    url = f"redis://pix:{password}@redis.internal:6379/0"
    assert urlsplit(url).password == password  # what the client would really use
    redacted = redact_url(url)
    assert redacted == f"redis://pix:{MASK}@redis.internal:6379/0"


def test_redact_is_idempotent() -> None:
    once = redact_url("redis://:pw@h/0")
    assert redact_url(once) == once


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@img.example/a.png", "https://img.example/a.png"),
        ("http://user@img.example:8080/a.png?x=1#f", "http://img.example:8080/a.png?x=1#f"),
        ("http://u:pw@[2001:db8::1]:81/a", "http://[2001:db8::1]:81/a"),
        ("https://img.example/a.png", "https://img.example/a.png"),
    ],
)
def test_strip_userinfo(url: str, expected: str) -> None:
    assert strip_userinfo(url) == expected


def test_strip_userinfo_on_unparsable_url_still_masks() -> None:
    # An invalid IPv6 literal makes urlsplit raise; the fallback must still mask.
    assert "pw" not in strip_userinfo("http://u:pw@[not-an-ip/a")
