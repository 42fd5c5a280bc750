"""Politeness without Redis: its settings, robots.txt parsing and caps, turns between sites.

The parts that need Redis and workers (the shared cache, the cross-worker limit,
deferral) are tested in tests/integration/test_polite.py.
"""

from __future__ import annotations

import logging
import time

import pytest
from protego import Protego

from pixcrawler.builder.polite import _Queue, describe
from pixcrawler.builder.robots import MAX_BYTES, Policy, _decode, _encode, cut, failure_ttl
from pixcrawler.celery_core.config import SettingsError, load_settings

P = "PIXCRAWLER_CELERY_"


def test_the_user_agent_names_the_crawler_and_a_contact() -> None:
    settings = load_settings({})
    assert settings.user_agent_header.startswith("PixCrawler/0.1 (+https://")
    assert settings.robots_token == "PixCrawler"
    own = load_settings(
        {f"{P}CRAWL_USER_AGENT": "ExampleBot/2", f"{P}CRAWL_CONTACT_URL": "mailto:ops@example.org"}
    )
    assert own.user_agent_header == "ExampleBot/2 (+mailto:ops@example.org)"
    assert own.robots_token == "ExampleBot"


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CRAWL_USER_AGENT", "Pix Crawler/1", "product token"),
        ("CRAWL_USER_AGENT", "PixCrawler/0.1 (+https://x.example)", "product token"),
        ("CRAWL_CONTACT_URL", "ftp://example.org", "https://, http:// or mailto:"),
        ("CRAWL_CONTACT_URL", "https://example.org/a b", "without spaces"),
        ("CRAWL_CONTACT_URL", "https://u:secret@example.org", "credentials"),
        ("CRAWL_EXEMPT_HOSTS", "https://images.example.org/", "not a host name"),
        ("CRAWL_EXEMPT_HOSTS", "images.example.org:8080", "not a host name"),
        ("CRAWL_ROBOTS_CACHE_TTL", "172800", "less than or equal to 86400"),
        ("CRAWL_SITE_MAX_IN_FLIGHT", "0", "greater than or equal to 1"),
        ("CRAWL_SITE_WAIT_MAX", "0", "greater than 0"),
    ],
)
def test_bad_politeness_settings_name_the_variable(variable: str, value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({P + variable: value})
    [(_name, message)] = [p for p in info.value.problems if p[0] == P + variable]
    assert reason in message
    assert "secret" not in message


def test_exempt_hosts_are_normalised_as_crawl_urls_name_them() -> None:
    settings = load_settings(
        {f"{P}CRAWL_EXEMPT_HOSTS": "Images.Example.org, bücher.example, [::1]"}
    )
    assert settings.crawl_exempt_hosts == ["images.example.org", "xn--bcher-kva.example", "::1"]


def test_the_worker_says_what_it_obeys_and_whom_it_exempts() -> None:
    level, line = describe(load_settings({}))
    assert level == logging.INFO
    assert "robots.txt obeyed" in line
    assert "at most 4 in flight" in line
    level, line = describe(
        load_settings({f"{P}CRAWL_EXEMPT_HOSTS": "own.example", f"{P}CRAWL_SITE_LIMITS": "false"})
    )
    assert level == logging.WARNING
    assert "per-site limits OFF" in line
    assert "exempt from robots.txt and per-site limits" in line
    assert "own.example" in line


def test_an_oversized_robots_txt_is_cut_at_a_whole_line() -> None:
    line = b"Disallow: /" + b"a" * 100 + b"\n"
    body = line * (MAX_BYTES // len(line) + 10)
    kept = cut(body)
    assert len(kept) <= MAX_BYTES
    assert kept.endswith(b"\n")
    assert len(kept) > MAX_BYTES - len(line)
    assert cut(b"User-agent: *\n") == b"User-agent: *\n"


def test_cached_policies_round_trip_small() -> None:
    text = b"User-agent: PixCrawler\nDisallow: /private\nCrawl-delay: 3\n"
    raw = _encode("rules", text)
    policy = _decode(raw, 1000)
    assert policy.state == "rules"
    assert not policy.allows("/private/a.png", "PixCrawler")
    assert policy.allows("/public/a.png", "PixCrawler")
    assert policy.crawl_delay("PixCrawler") == 3.0
    assert _decode(_encode("absent", b""), 1000) == Policy("absent")
    unreachable = _decode(_encode("unreachable", b""), 1500)
    assert (unreachable.state, unreachable.retry_after) == ("unreachable", 1.5)
    assert not unreachable.allows("/anything", "PixCrawler")
    big = b"User-agent: *\nDisallow: /x\n" + b"# comment\n" * 20000
    assert len(_encode("rules", big)) < 2000  # compressed: the broker runs noeviction


def test_the_token_matches_groups_not_substrings() -> None:
    parser = Protego.parse("User-agent: crawler\nDisallow: /\n")
    assert Policy("rules", parser).allows("/a.png", "PixCrawler")


def test_an_unreachable_robots_txt_is_asked_again_when_its_urls_retry() -> None:
    assert failure_ttl(load_settings({})) == 30
    assert failure_ttl(load_settings({f"{P}CRAWL_RETRY_AFTER_MAX": "5"})) == 5


def test_sites_take_turns_and_a_busy_site_is_skipped() -> None:
    hosts = ["big"] * 5 + ["small"] * 2
    queue = _Queue(hosts, range(7))
    now = time.monotonic()
    order = [queue.take(now) for _ in range(4)]
    assert [hosts[i] for i in order if i is not None] == ["big", "small", "big", "small"]
    taken = queue.take(now)
    assert taken == 2
    queue.put_back("big", taken, busy_for=60)
    assert queue.take(time.monotonic()) is None  # only the busy site is left
    assert queue.remaining() == [2, 3, 4]
    assert 59 < queue.next_free(time.monotonic()) <= 60


def test_the_wait_on_busy_sites_leaves_time_before_the_soft_time_limit() -> None:
    """A short soft time limit (tests, quick queues) is not an error; the wait shrinks."""
    assert load_settings({}).site_wait_seconds == 10
    short = load_settings({f"{P}TASK_SOFT_TIME_LIMIT": "4", f"{P}TASK_TIME_LIMIT": "8"})
    assert short.site_wait_seconds == 2
