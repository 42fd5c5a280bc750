"""Per-site limits that hold across every worker on every host: slots and pace, in Redis.

Each site (host) has at most ``CRAWL_SITE_MAX_IN_FLIGHT`` requests in flight and at least
``CRAWL_SITE_MIN_DELAY`` (or the site's robots.txt Crawl-delay, capped) between the starts
of two requests, whichever worker, process or host sends them. Celery's rate limits are
per worker and Scrapy's per process; here one Lua script decides atomically in Redis,
on Redis's clock (the hosts' clocks may differ):

- ``pixcrawler:site:<host>:slots``, a sorted set of leases (a random token scored by the
  time it expires). A worker killed mid-download never returns its lease; it lapses
  after the longest a download may take (``CRAWL_TOTAL_TIMEOUT`` plus a margin), so a
  slot is never lost for good.
- ``pixcrawler:site:<host>:next``, the earliest time the next request may start.

Both keys carry TTLs no longer than a lease or the delay (the broker's Redis runs with
``noeviction``: nothing may pile up), and hold at most a few dozen bytes per site.

A refused acquire is not waited out here: the caller says how long the site is busy and
works on another site's URL meanwhile (polite.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import redis

from pixcrawler.celery_core.config import CelerySettings

SITE_PREFIX = "pixcrawler:site:"
#: How long a site that is full (no free slot) is not asked again: a slot frees when a
#: download ends, which the script cannot predict.
FULL_RETRY_MS = 50
#: A lease outlives the longest download by this much (the store write after the body).
LEASE_MARGIN_S = 30

# KEYS[1] leases (zset), KEYS[2] next start (string)
# ARGV[1] token, ARGV[2] limit, ARGV[3] delay ms, ARGV[4] lease ms
# Returns 0 when the lease was taken, else the milliseconds to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return tonumber(ARGV[5])
end
local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
if nxt > now then
  return nxt - now
end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
local delay = tonumber(ARGV[3])
if delay > 0 then
  redis.call('SET', KEYS[2], now + delay, 'PX', delay)
end
return 0
"""


def site_keys(host: str) -> tuple[str, str]:
    return f"{SITE_PREFIX}{host}:slots", f"{SITE_PREFIX}{host}:next"


@dataclass(frozen=True)
class Lease:
    host: str
    token: str


class SiteLimiter:
    """Take and give back a site's slots; one per process, shared by its threads."""

    def __init__(self, client: redis.Redis, settings: CelerySettings) -> None:
        self._client = client
        self._script: Any = client.register_script(_ACQUIRE)
        self._limit = settings.crawl_site_max_in_flight
        self._delay = settings.crawl_site_min_delay
        self._delay_cap = settings.crawl_robots_delay_max
        self._lease_ms = int((settings.crawl_total_timeout + LEASE_MARGIN_S) * 1000)

    def delay_for(self, crawl_delay: float | None) -> float:
        """The site's least delay: the setting, or its Crawl-delay (capped) if longer."""
        if crawl_delay is None:
            return self._delay
        return max(self._delay, min(crawl_delay, self._delay_cap))

    def try_acquire(self, host: str, crawl_delay: float | None = None) -> Lease | float:
        """A lease on one of *host*'s slots, or the seconds to wait before asking again."""
        token = secrets.token_hex(8)
        delay_ms = int(self.delay_for(crawl_delay) * 1000)
        wait_ms = int(
            self._script(
                keys=list(site_keys(host)),
                args=[token, self._limit, delay_ms, self._lease_ms, FULL_RETRY_MS],
            )
        )
        if wait_ms <= 0:
            return Lease(host, token)
        return wait_ms / 1000

    def release(self, lease: Lease) -> None:
        """Give the slot back at once (the pace key stays: it spaces the next start)."""
        self._client.zrem(site_keys(lease.host)[0], lease.token)
