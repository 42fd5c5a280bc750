"""What a request to a checked address carries for the name: Host, SNI, credentials.

Pure: URLs are taken apart, nothing is looked up or sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pixcrawler.builder.retry_after import retry_after_seconds
from pixcrawler.builder.target import parse_target
from pixcrawler.celery_core.errors import TaskError


@pytest.mark.parametrize(
    ("url", "host", "host_header", "path"),
    [
        ("http://example.org/a.png", "example.org", "example.org", "/a.png"),
        ("http://[::1]:8080/a", "::1", "[::1]:8080", "/a"),
        (
            "https://[2001:db8::5]/a?q=1",
            "2001:db8::5",
            "[2001:db8::5]",
            "/a?q=1",
        ),
        ("http://Bücher.example/x", "xn--bcher-kva.example", "xn--bcher-kva.example", "/x"),
        ("http://bücher.example:81/x", "xn--bcher-kva.example", "xn--bcher-kva.example:81", "/x"),
        ("http://EXAMPLE.org:80", "example.org", "example.org:80", "/"),
    ],
)
def test_host_header_and_request_target(url: str, host: str, host_header: str, path: str) -> None:
    target = parse_target(url)
    assert target.host == host
    assert target.host_header == host_header
    assert target.host_header.isascii()
    assert target.server_name == host
    assert target.path == path


def test_credentials_are_decoded_and_never_shown() -> None:
    target = parse_target("http://us%40er:p%3Ass%40w0rd@example.org/a")
    assert target.auth == ("us@er", "p:ss@w0rd")
    assert "w0rd" not in repr(target)
    assert parse_target("http://example.org/a").auth is None
    assert parse_target("http://user@example.org/a").auth == ("user", "")


def test_origins_tell_where_credentials_may_go() -> None:
    base = parse_target("https://u:p@example.org/a").origin
    assert parse_target("https://example.org:443/b").origin == base
    assert parse_target("http://example.org/b").origin != base  # a downgrade
    assert parse_target("https://cdn.example.org/b").origin != base


@pytest.mark.parametrize(
    "url",
    [
        "http://[fe80::1%25eth0]/",  # a zone names an interface of the worker itself
        "http://a..bü/",  # an empty label
        "http://-bücher.example/",  # a leading hyphen
        "http://\u0660\u06f0.example/",  # Arabic-Indic digits of both kinds mixed
    ],
)
def test_hosts_that_cannot_be_encoded_are_invalid_urls(url: str) -> None:
    with pytest.raises(TaskError) as info:
        parse_target(url)
    assert info.value.code == "invalid_url"


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        (" 30 ", 30.0),
        ("0", None),
        ("-5", None),
        ("1e3", None),
        ("", None),
        (None, None),
        ("Wed, 01 Jan 2025 12:01:00 GMT", 60.0),
        ("Wednesday, 01-Jan-25 12:00:10 GMT", 10.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", None),  # in the past
        ("Thu, 01 Jan 2026 12:00:00 GMT", 300.0),  # capped
        ("10000", 300.0),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, 300, now=NOW) == expected
