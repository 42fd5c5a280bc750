"""A crawl task's URLs run politely: robots.txt first, a site slot for each request, and
fair turns between sites.

Fair sharing, within a task: the URLs are queued per site and taken round-robin, one
site after another, so a batch of 10,000 URLs of one site and 10 of another does not
leave the 10 for the end. A thread whose next site is busy (no free slot, its delay not
yet over, its robots.txt being fetched by another worker) does not wait for it: it
takes the next site's URL. Between tasks: slots are leased per request, so every task
with a URL of a busy site takes its turn at the same slots.

When every URL left in a task waits on busy sites and nothing has started for
``CRAWL_SITE_WAIT_MAX`` seconds, the task stops instead of sleeping on a worker slot
that other tasks (other sites) could use: the URLs it has not started are returned as
*deferred*, and the task sends itself again for them, later (tasks.py).

Exempt hosts (``CRAWL_EXEMPT_HOSTS``: sources the operator owns) skip robots.txt and the
limits; their outcomes say ``"exempt": true``.

A redirect is another request, maybe to another site: each hop after the first obeys the
robots.txt of the site it leads to (fetched then if no worker has it) and, on another
host, takes one of that host's slots, waiting for it within the download's total time
(:meth:`Politeness.hop`). Otherwise a site could be crawled past its rules, or past its
limit, by links that redirect to it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from pixcrawler.builder import deadline
from pixcrawler.builder.robots import Policy, RobotsCache, Site
from pixcrawler.builder.sites import Lease, SiteLimiter
from pixcrawler.builder.target import Target, parse_target
from pixcrawler.celery_core.base import classify
from pixcrawler.celery_core.config import CelerySettings, env_name
from pixcrawler.celery_core.errors import TaskError, TransientError
from pixcrawler.celery_core.redact import strip_userinfo

Outcome = dict[str, Any]
logger = logging.getLogger("pixcrawler.crawl")

#: How long a site whose robots.txt another worker is fetching is left alone (s).
ROBOTS_LOCKED_WAIT = 0.05
#: The longest one idle wait, so that a thread notices a finished neighbour soon.
MAX_NAP = 0.5


class Politeness:
    """What one worker process needs for politeness; shared by its tasks and threads."""

    def __init__(self, client: redis.Redis, settings: CelerySettings) -> None:
        self.settings = settings
        self.token = settings.robots_token
        self.exempt = frozenset(settings.crawl_exempt_hosts)
        self.robots = RobotsCache(client, settings) if settings.crawl_obey_robots else None
        self.limiter = SiteLimiter(client, settings) if settings.crawl_site_limits else None

    @property
    def active(self) -> bool:
        return self.robots is not None or self.limiter is not None

    @contextlib.contextmanager
    def hop(self, first_host: str, target: Target) -> Iterator[None]:
        """A redirect hop to *target*: its site's robots.txt must allow it, and on another
        host than the first request's it holds one of that host's slots while it runs."""
        if target.host in self.exempt:
            yield
            return
        policy = self._policy_now(self.robots, target) if self.robots is not None else None
        lease: Lease | None = None
        if self.limiter is not None and target.host != first_host:
            crawl_delay = policy.crawl_delay(self.token) if policy is not None else None
            while not isinstance(got := self.limiter.try_acquire(target.host, crawl_delay), Lease):
                _nap(got, "a slot of the site a redirect leads to")
            lease = got
        try:
            yield
        finally:
            if lease is not None and self.limiter is not None:
                self.limiter.release(lease)

    def retry_after(self, policy: Policy) -> float:
        """When to ask an unreachable robots.txt again, capped like a server's Retry-After
        (TASK_RETRY_BACKOFF_MAX keeps it under the visibility timeout)."""
        cap = min(self.settings.crawl_retry_after_max, self.settings.task_retry_backoff_max)
        return min(policy.retry_after or 0.0, cap)

    def _policy_now(self, robots: RobotsCache, target: Target) -> Policy:
        """The site's robots.txt for a redirect hop: cached, or fetched now (waiting while
        another worker fetches it); refusing the hop as the first request would be."""
        site = Site.of(target)
        while (policy := robots.cached(site)) is None:
            token = robots.try_lock(site)
            if token is not None:
                policy = robots.fetch(site, token)
                break
            _nap(ROBOTS_LOCKED_WAIT, "another worker's fetch of a redirect's robots.txt")
        if policy.state == "unreachable":
            raise TransientError(
                "robots_unavailable",
                "robots.txt of the site a redirect leads to could not be read",
                {"retry_after": self.retry_after(policy)},
            )
        if not policy.allows(target.path, self.token):
            raise TaskError(
                "disallowed_by_robots", "robots.txt of the site a redirect leads to disallows it"
            )
        return policy


_instances: dict[int, Politeness] = {}
_instances_lock = threading.Lock()


def politeness_for(client: redis.Redis, settings: CelerySettings) -> Politeness:
    """One per settings object (one per app) in a process."""
    with _instances_lock:
        found = _instances.get(id(settings))
        if found is None or found.settings is not settings:
            found = _instances[id(settings)] = Politeness(client, settings)
        return found


def describe(settings: CelerySettings) -> tuple[int, str]:
    """The worker's start-up line about politeness, and its log level (never silent)."""
    parts = [f"User-Agent {settings.user_agent_header!r}"]
    level = logging.INFO
    if settings.crawl_obey_robots:
        parts.append(f"robots.txt obeyed (cached {settings.crawl_robots_cache_ttl} s)")
    else:
        parts.append(f"robots.txt IGNORED ({env_name('crawl_obey_robots')}=false)")
        level = logging.WARNING
    if settings.crawl_site_limits:
        parts.append(
            f"per site at most {settings.crawl_site_max_in_flight} in flight, "
            f"{settings.crawl_site_min_delay} s apart"
        )
    else:
        parts.append(f"per-site limits OFF ({env_name('crawl_site_limits')}=false)")
        level = logging.WARNING
    if settings.crawl_exempt_hosts:
        parts.append(
            "exempt from robots.txt and per-site limits "
            f"({env_name('crawl_exempt_hosts')}): {', '.join(settings.crawl_exempt_hosts)}"
        )
        level = logging.WARNING
    return level, "crawl politeness: " + "; ".join(parts)


@dataclass
class Run:
    """What a polite run did: outcomes by position, and the positions it did not start."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    deferred: list[int] = field(default_factory=list)
    #: Seconds until the first of the deferred URLs' sites is expected to be free.
    wait_hint: float = 0.0


@dataclass(frozen=True)
class _Busy:
    seconds: float


def _error(url: str, error: TaskError, **extra: Any) -> Outcome:
    outcome: Outcome = {
        "url": strip_userinfo(url),
        "status": "error",
        "error": error.code,
        "message": error.message,
        "retryable": error.retryable,
        **extra,
    }
    return outcome


class _Queue:
    """The task's URLs per site, taken round-robin among the sites that are not busy."""

    def __init__(self, hosts: Sequence[str | None], pending: Sequence[int]) -> None:
        self.by_host: OrderedDict[str | None, deque[int]] = OrderedDict()
        for i in pending:
            self.by_host.setdefault(hosts[i], deque()).append(i)
        self.busy_until: dict[str | None, float] = {}
        self.cond = threading.Condition()
        self.last_start = time.monotonic()
        #: URLs taken and not yet settled: one may come back (busy) for a waiting thread.
        self.active = 0

    def take(self, now: float) -> int | None:
        for host in list(self.by_host):
            if self.busy_until.get(host, 0.0) <= now:
                queue = self.by_host[host]
                index = queue.popleft()
                # Round-robin: this site goes to the back of the line.
                self.by_host.move_to_end(host)
                if not queue:
                    del self.by_host[host]
                return index
        return None

    def put_back(self, host: str | None, index: int, busy_for: float) -> None:
        self.by_host.setdefault(host, deque()).appendleft(index)
        self.busy_until[host] = time.monotonic() + busy_for

    def next_free(self, now: float) -> float:
        return min((self.busy_until.get(h, now) - now for h in self.by_host), default=0.0)

    def remaining(self) -> list[int]:
        return sorted(i for queue in self.by_host.values() for i in queue)


def run_polite(
    urls: Sequence[str],
    pending: Sequence[int],
    fetch: Callable[[str], Outcome],
    politeness: Politeness,
    concurrency: int,
) -> Run:
    """The outcome of each pending URL, or the URL deferred; see the module docstring."""
    hosts: list[str | None] = []
    for url in urls:
        try:
            hosts.append(parse_target(url).host)
        except TaskError:
            hosts.append(None)  # its download reports why; no site to be polite to
    queue = _Queue(hosts, pending)
    run = Run()
    wait_max = politeness.settings.site_wait_seconds

    def worker() -> None:
        while True:
            with queue.cond:
                now = time.monotonic()
                index = queue.take(now)
                if index is None:
                    if not queue.by_host and not queue.active:
                        return
                    idle = now - queue.last_start
                    if idle >= wait_max and queue.by_host:
                        return
                    nap = MAX_NAP
                    if queue.by_host:
                        nap = min(max(queue.next_free(now), 0.005), wait_max - idle, MAX_NAP)
                    queue.cond.wait(nap)
                    continue
                queue.active += 1
            result = _attempt(urls[index], hosts[index], fetch, politeness, queue)
            with queue.cond:
                queue.active -= 1
                if isinstance(result, _Busy):
                    queue.put_back(hosts[index], index, result.seconds)
                else:
                    run.outcomes[index] = result
                queue.cond.notify_all()

    threads = min(concurrency, len(pending))
    if threads <= 1:
        worker()
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="crawl-polite") as pool:
            for future in [pool.submit(worker) for _ in range(threads)]:
                future.result()
    run.deferred = queue.remaining()
    run.wait_hint = max(queue.next_free(time.monotonic()), 0.0)
    return run


def _attempt(
    url: str,
    host: str | None,
    fetch: Callable[[str], Outcome],
    politeness: Politeness,
    queue: _Queue,
) -> Outcome | _Busy:
    """One step for *url*: its outcome, or how long its site is busy."""
    if host is None:
        return fetch(url)
    if host in politeness.exempt:
        _started(queue)
        return {**fetch(url), "exempt": True}
    try:
        target = parse_target(url)
        policy: Policy | None = None
        robots = politeness.robots
        if robots is not None:
            site = Site.of(target)
            policy = robots.cached(site)
            if policy is None:
                return _fetch_robots(robots, site, host, politeness, queue)
            if policy.state == "unreachable":
                return _error(
                    url,
                    TransientError(
                        "robots_unavailable",
                        "robots.txt could not be read (server error or unreachable); "
                        "nothing of the site is crawled until it can be",
                    ),
                    retry_after=politeness.retry_after(policy),
                )
            if not policy.allows(target.path, politeness.token):
                return _error(
                    url,
                    TaskError("disallowed_by_robots", "robots.txt disallows this URL"),
                    robots="disallowed",
                )
        lease: Lease | None = None
        if politeness.limiter is not None:
            crawl_delay = policy.crawl_delay(politeness.token) if policy is not None else None
            got = politeness.limiter.try_acquire(host, crawl_delay)
            if not isinstance(got, Lease):
                return _Busy(got)
            lease = got
    except Exception as exc:  # Redis down, a refused robots.txt: this URL's outcome
        error = classify(exc)
        return _error(url, error)
    _started(queue)
    try:
        outcome = fetch(url)
    finally:
        if lease is not None and politeness.limiter is not None:
            try:
                politeness.limiter.release(lease)
            except Exception:  # the lease lapses by itself
                logger.warning("could not return a site slot of %s; it lapses by itself", host)
    robots_state = "off" if policy is None else policy.state
    return {**outcome, "robots": "allowed" if robots_state == "rules" else robots_state}


def _fetch_robots(
    robots: RobotsCache, site: Site, host: str, politeness: Politeness, queue: _Queue
) -> _Busy:
    """Fetch the site's robots.txt in one of its slots, unless another worker is at it.

    Always "busy" afterwards: the URL is taken again, and then finds the cached answer
    (and its slot after the site's delay).
    """
    token = robots.try_lock(site)
    if token is None:
        return _Busy(ROBOTS_LOCKED_WAIT)
    lease: Lease | None = None
    if politeness.limiter is not None:
        got = politeness.limiter.try_acquire(host)
        if not isinstance(got, Lease):
            robots.unlock(site, token)
            return _Busy(got)
        lease = got
    _started(queue)
    try:
        robots.fetch(site, token)
    finally:
        if lease is not None and politeness.limiter is not None:
            politeness.limiter.release(lease)
    return _Busy(0.0)


def _nap(seconds: float, waiting_for: str) -> None:
    """Sleep before asking again, within the download's total time (deadline.py)."""
    left = deadline.left()
    if left is not None and left <= seconds:
        raise TransientError("timeout", f"the total time ran out waiting for {waiting_for}")
    time.sleep(seconds)


def _started(queue: _Queue) -> None:
    with queue.cond:
        queue.last_start = time.monotonic()
