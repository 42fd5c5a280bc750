"""Crawling politely across workers: robots.txt (RFC 9309) fetched once for the cluster,
per-site limits that hold across two real worker processes, fair turns between sites,
and exempt hosts.

Each site is its own loopback server (127.0.0.x, a port of its own), which serves its
robots.txt at ``/robots.txt`` and measures, per Host, the requests in flight and when
each arrived: the assertions are the server's counts, never timings of our code.
Workers are real threads-pool workers (as the crawl queue runs in production) on their
own broker databases (4 and 5).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, chain
from celery.result import AsyncResult

from pixcrawler.builder.robots import MAX_BYTES
from pixcrawler.builder.tasks import MAX_DEFERRALS
from pixcrawler.celery_core.errors import TaskError
from tests.support import images
from tests.support.harness import RedisServer, Worker, client_app, settings_env
from tests.support.http_fixtures import LoopbackHTTPServer, Route, serving

TIMEOUT = 90
IN_FLIGHT = 2
MIN_DELAY = 0.1
EXEMPT = "127.0.0.9"
_hosts = itertools.count(10)


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, storage_dir: Path) -> dict[str, str]:
    return settings_env(
        redis_server,
        storage_dir,
        broker_url=redis_server.url(4),
        result_backend=redis_server.url(5),
        crawl_total_timeout="1",
        crawl_retry_after_max="1",
        crawl_batch_concurrency="4",
        crawl_site_max_in_flight=str(IN_FLIGHT),
        crawl_site_min_delay=str(MIN_DELAY),
        crawl_site_wait_max="1",
        crawl_exempt_hosts=EXEMPT,
    )


def _worker(env: dict[str, str], logdir: Path) -> Worker:
    return Worker(env, "crawl", logdir=logdir, pool="threads", concurrency=4)


@pytest.fixture(scope="module")
def crawl_worker(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = _worker(env, tmp_path_factory.mktemp("polite"))
    w.start()
    yield w
    w.stop()
    w.kill()


@pytest.fixture
def second_worker(env: dict[str, str], tmp_path: Path, crawl_worker: Worker) -> Iterator[Worker]:
    w = _worker(env, tmp_path)
    w.start()
    yield w
    w.stop()
    w.kill()


@pytest.fixture(scope="module")
def app(env: dict[str, str], crawl_worker: Worker) -> Iterator[Celery]:
    with client_app(env) as client:
        yield client


@contextlib.contextmanager
def site(robots: Route | None = None, host: str | None = None) -> Iterator[LoopbackHTTPServer]:
    """A new site on its own loopback address, with *robots* at /robots.txt (else 404)."""
    with serving(host or f"127.0.0.{next(_hosts)}") as server:
        if robots is not None:
            server.put("/robots.txt", robots)
        yield server


def robots_txt(text: str, **kwargs: Any) -> Route:
    return Route(body=text.encode(), content_type="text/plain", **kwargs)


def _crawl(app: Celery, urls: str | list[str]) -> AsyncResult[Any]:
    return app.send_task("builder.tasks.crawl_task", args=[urls])


def _images(server: LoopbackHTTPServer, n: int, name: str, delay: float = 0.0) -> list[str]:
    return [
        server.add(Route(body=images.png(f"{name}-{server.host}-{i}"), delay=delay), name)
        for i in range(n)
    ]


RULES = """
User-agent: otherbot
Disallow: /

User-agent: PixCrawler
Disallow: /private
"""


def test_robots_txt_allows_and_disallows_and_is_part_of_the_outcome(app: Celery) -> None:
    with site(robots_txt(RULES)) as server:
        allowed = _images(server, 2, "public")
        [denied] = _images(server, 1, "private")
        envelope = _crawl(app, [*allowed, denied]).get(timeout=TIMEOUT)
        outcomes = envelope["data"]["outcomes"]
        assert [o["status"] for o in outcomes] == ["ok", "ok", "error"]
        assert [o.get("robots") for o in outcomes[:2]] == ["allowed", "allowed"]
        assert outcomes[2]["error"] == "disallowed_by_robots"
        assert outcomes[2]["retryable"] is False
        assert envelope["retries"] == 0  # final: not retried
        assert server.hits(denied) == 0
        assert [server.hits(u) for u in allowed] == [1, 1]
        assert server.hits("/robots.txt") == 1
        # Matched by the product token of the User-Agent, which names a contact.
        agent = server.requests("/robots.txt")[0]["User-Agent"]
        assert agent.startswith("PixCrawler/")
        assert "(+https://" in agent


def test_a_single_disallowed_url_fails_with_the_robots_code(app: Celery) -> None:
    with site(robots_txt("User-agent: *\nDisallow: /\n")) as server:
        [url] = _images(server, 1, "any")
        result = _crawl(app, url)
        result.get(timeout=TIMEOUT, propagate=False)
        assert isinstance(result.result, TaskError)
        assert result.result.code == "disallowed_by_robots"
        assert server.hits(url) == 0


def test_no_robots_txt_4xx_allows_everything(app: Celery) -> None:
    with site(robots_txt("", statuses=[403])) as forbidden, site() as missing:
        urls = _images(forbidden, 1, "a") + _images(missing, 1, "b")
        outcomes = _crawl(app, urls).get(timeout=TIMEOUT)["data"]["outcomes"]
        assert [(o["status"], o["robots"]) for o in outcomes] == [("ok", "absent")] * 2
        assert forbidden.hits("/robots.txt") == missing.hits("/robots.txt") == 1


def test_a_5xx_robots_txt_disallows_for_now_and_the_url_is_retried(app: Celery) -> None:
    """RFC 9309 2.3.1.4: a server error means "disallow all" until it can be read; the
    URL is retried (not failed), and the retry reads robots.txt again."""
    with site(robots_txt("User-agent: *\nAllow: /\n", statuses=[503, 200])) as server:
        [url] = _images(server, 1, "later")
        envelope = _crawl(app, url).get(timeout=TIMEOUT)
        assert envelope["retries"] == 1
        assert envelope["data"]["outcomes"][0]["status"] == "ok"
        assert server.hits("/robots.txt") == 2
        assert server.hits(url) == 1  # never fetched while robots.txt was failing


def test_an_unreachable_robots_txt_disallows_and_is_retryable(app: Celery) -> None:
    """A robots.txt that does not answer within CRAWL_TOTAL_TIMEOUT (1 s here)."""
    with site(robots_txt("User-agent: *\nAllow: /\n", delay=3)) as server:
        [url] = _images(server, 1, "never")
        result = _crawl(app, url)
        result.get(timeout=TIMEOUT, propagate=False)
        error = result.result
        assert isinstance(error, TaskError), repr(error)
        assert error.code == "robots_unavailable"
        assert error.details["outcomes"][0]["retryable"] is True
        assert server.hits(url) == 0
        # Each try read it once (the failure is cached until the retry), not per URL.
        assert server.hits("/robots.txt") == 4


def test_robots_txt_beyond_500_kib_is_cut_not_failed(app: Celery) -> None:
    head = "User-agent: *\nDisallow: /private\n"
    filler = "# " + "x" * 1000 + "\n"
    body = head + filler * (MAX_BYTES // len(filler) + 50) + "Disallow: /late\n"
    assert len(body.encode()) > MAX_BYTES
    with site(robots_txt(body)) as server:
        [private] = _images(server, 1, "private")
        [late] = _images(server, 1, "late")
        outcomes = _crawl(app, [private, late]).get(timeout=TIMEOUT)["data"]["outcomes"]
        assert outcomes[0]["error"] == "disallowed_by_robots"
        # The rule past the cap is ignored: its URL is allowed.
        assert (outcomes[1]["status"], outcomes[1]["robots"]) == ("ok", "allowed")


def test_robots_txt_redirects_are_followed_to_another_host(app: Celery) -> None:
    with site(robots_txt("User-agent: *\nDisallow: /private\n")) as rules:
        rules_url = rules.put("/rules.txt", robots_txt("User-agent: *\nDisallow: /private\n"))
        moved = Route(statuses=[301], headers={"Location": rules_url})
        with site(moved) as server:
            [private] = _images(server, 1, "private")
            [public] = _images(server, 1, "public")
            outcomes = _crawl(app, [private, public]).get(timeout=TIMEOUT)["data"]["outcomes"]
            assert [o["status"] for o in outcomes] == ["error", "ok"]
            assert outcomes[0]["error"] == "disallowed_by_robots"
            assert rules.hits("/rules.txt") == 1


def _moved_to(server: LoopbackHTTPServer, url: str) -> str:
    """A URL on *server* that redirects to *url*."""
    return server.add(Route(statuses=[302], headers={"Location": url}), "moved")


def test_a_redirect_obeys_the_robots_txt_of_the_site_it_leads_to(app: Celery) -> None:
    """A link on an open site that redirects into another site's disallowed part is
    refused at the hop, as the direct link would be; the allowed part is fetched."""
    with site(robots_txt(RULES)) as target, site(robots_txt("User-agent: *\nAllow: /\n")) as hub:
        [private] = _images(target, 1, "private")
        [public] = _images(target, 1, "public")
        urls = [_moved_to(hub, private), _moved_to(hub, public)]
        outcomes = _crawl(app, urls).get(timeout=TIMEOUT)["data"]["outcomes"]
        assert [o["status"] for o in outcomes] == ["error", "ok"]
        assert outcomes[0]["error"] == "disallowed_by_robots"
        assert outcomes[0]["retryable"] is False
        assert "redirect" in outcomes[0]["message"]
        assert target.hits(private) == 0
        assert target.hits(public) == 1
        assert target.hits("/robots.txt") == 1  # through the cluster's cache, as always


def test_redirects_from_many_sites_to_one_hold_its_limit(app: Celery) -> None:
    """Eight links on four sites (their slots do not limit each other) all redirect to
    one slow site: it still sees at most IN_FLIGHT requests at once."""
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(site())
        hubs = [stack.enter_context(site()) for _ in range(4)]
        images_there = _images(target, 8, "landing", delay=0.2)
        urls = [_moved_to(hubs[i % 4], url) for i, url in enumerate(images_there)]
        envelope = _crawl(app, urls).get(timeout=TIMEOUT)
        assert envelope["data"]["succeeded"] == 8
        assert target.max_in_flight(target.host_header) == IN_FLIGHT  # reached, not exceeded
        assert all(target.hits(u) >= 1 for u in images_there)


def test_two_workers_fetch_a_sites_robots_txt_once(
    app: Celery, crawl_worker: Worker, second_worker: Worker
) -> None:
    """Eight tasks of one site at once, on two worker processes: one robots.txt request
    (it is slow, so the others come while it is being fetched: they wait for it)."""
    with site(robots_txt("User-agent: *\nAllow: /\n", delay=0.5)) as server:
        results = [_crawl(app, _images(server, 3, f"shared{i}")) for i in range(8)]
        for result in results:
            assert result.get(timeout=TIMEOUT)["data"]["succeeded"] == 3
        assert server.hits("/robots.txt") == 1
        assert _ran_on(crawl_worker)
        assert _ran_on(second_worker)


def _ran_on(worker: Worker) -> bool:
    return "builder.tasks.crawl_task" in worker.log() and "succeeded" in worker.log()


def test_the_per_site_limit_holds_across_two_worker_processes(
    app: Celery, crawl_worker: Worker, second_worker: Worker
) -> None:
    """Two workers of 4 threads, each task 4 downloads at once: up to 32 could hit the
    site together. The site itself counts at most IN_FLIGHT, MIN_DELAY apart."""
    with site() as server:
        results = [_crawl(app, _images(server, 5, f"limit{i}", delay=0.3)) for i in range(8)]
        for result in results:
            assert result.get(timeout=TIMEOUT)["data"]["succeeded"] == 5
        host = server.host_header
        assert server.max_in_flight(host) == IN_FLIGHT  # reached, never exceeded
        arrivals = server.arrivals(host)
        assert len(arrivals) == 8 * 5 + 1  # and robots.txt
        # Starts are spaced on Redis's clock when the slot is taken; the site sees each
        # request a moment later, by as much as the worker takes to send it (tens of ms
        # on a busy 2-core machine), so spacing is judged over runs of five requests.
        spans = [b - a for a, b in zip(arrivals, arrivals[5:], strict=False)]
        assert min(spans) >= 5 * MIN_DELAY * 0.8, min(spans)
        for w in (crawl_worker, second_worker):
            assert "task_succeeded" in w.log() or "succeeded" in w.log()


def test_a_small_site_is_not_stuck_behind_a_big_one(app: Celery) -> None:
    """One task: 40 URLs of a slow big site listed first, then 4 of a small site. The
    small site's URLs are taken in turn, not after the big site's 40."""
    with site() as big, site() as small:
        urls = _images(big, 40, "big", delay=0.3) + _images(small, 4, "small")
        data = _crawl(app, urls).get(timeout=TIMEOUT)["data"]
        assert data["succeeded"] == 44
        big_arrivals = big.arrivals(big.host_header)
        small_arrivals = small.arrivals(small.host_header)
        # Every small-site request (robots.txt and 4 images) came before the big site's
        # tenth: without turns they would come after its 36th.
        assert max(small_arrivals) < big_arrivals[9]


def test_a_task_waiting_on_a_busy_site_is_deferred_without_spending_retries(
    app: Celery, crawl_worker: Worker
) -> None:
    """Crawl-delay 1.5 s (above MIN_DELAY) is honoured; a task whose every URL waits
    longer than CRAWL_SITE_WAIT_MAX (1 s) gives its slot back and comes again later."""
    with site(robots_txt("User-agent: *\nCrawl-delay: 1.5\n")) as server:
        urls = _images(server, 4, "slow")
        result = _crawl(app, urls)
        envelope = result.get(timeout=TIMEOUT)
        assert envelope["data"]["succeeded"] == 4
        assert envelope["retries"] == 0
        assert envelope["data"]["deferrals"] >= 1
        assert [server.hits(u) for u in urls] == [1] * 4
        # robots.txt came first, spaced by MIN_DELAY only (its Crawl-delay was not known).
        images_arrived = server.arrivals(server.host_header)[1:]
        gaps = [b - a for a, b in itertools.pairwise(images_arrived)]
        assert min(gaps) >= 1.5 * 0.9, gaps
        assert f"event=task_deferred task=builder.tasks.crawl_task task_id={result.id}" in (
            crawl_worker.log()
        )


def test_past_the_deferral_cap_a_busy_site_spends_retries_instead(
    app: Celery, crawl_worker: Worker
) -> None:
    """At MAX_DEFERRALS turns a task defers no more: the URLs still waiting on their busy
    site are ``site_busy`` (retryable), so they are retried, spending TASK_MAX_RETRIES,
    and the task ends instead of coming back for ever."""
    with site(robots_txt("User-agent: *\nCrawl-delay: 1.5\n")) as server:
        urls = _images(server, 4, "capped")
        result = app.send_task(
            "builder.tasks.crawl_task", args=[urls], kwargs={"_deferrals": MAX_DEFERRALS}
        )
        envelope = result.get(timeout=TIMEOUT)
        data = envelope["data"]
        assert data["deferrals"] == MAX_DEFERRALS
        assert envelope["retries"] >= 1
        assert all(o["status"] == "ok" or o["error"] == "site_busy" for o in data["outcomes"])
        assert [server.hits(u) for u in urls] == [o["status"] == "ok" for o in data["outcomes"]]
        assert f"event=task_deferred task=builder.tasks.crawl_task task_id={result.id}" not in (
            crawl_worker.log()
        )


def test_a_deferred_crawl_still_hands_its_files_to_the_chained_validation(
    app: Celery, env: dict[str, str], tmp_path: Path
) -> None:
    """A deferral is Celery's retry with the same task id: the chain's next task runs
    once, on the files of the turn that finished."""
    validator = Worker(env, "validation", logdir=tmp_path, pool="threads", concurrency=2)
    validator.start()
    try:
        with site(robots_txt("User-agent: *\nCrawl-delay: 1.5\n")) as server:
            urls = _images(server, 3, "chained")
            workflow = chain(
                app.signature("builder.tasks.crawl_task", args=[urls]),
                app.signature("validator.tasks.validate_task"),
            )
            result = workflow.apply_async()
            validated = result.get(timeout=TIMEOUT)
            assert validated["task"] == "validator.tasks.validate_task"
            assert len(validated["data"]["valid"]) == 3
            assert isinstance(result.parent, AsyncResult)
            crawled = result.parent.get(timeout=TIMEOUT)
            assert crawled["data"]["deferrals"] >= 1
            assert validator.log().count("event=task_succeeded") == 1
    finally:
        validator.stop()
        validator.kill()


def test_exempt_hosts_skip_robots_and_limits_and_say_so(app: Celery, crawl_worker: Worker) -> None:
    with site(robots_txt("User-agent: *\nDisallow: /\n"), host=EXEMPT) as server:
        urls = _images(server, 6, "own", delay=0.3)
        outcomes = _crawl(app, urls).get(timeout=TIMEOUT)["data"]["outcomes"]
        assert [(o["status"], o.get("exempt")) for o in outcomes] == [("ok", True)] * 6
        assert server.hits("/robots.txt") == 0
        assert server.max_in_flight(server.host_header) > IN_FLIGHT  # not limited
    assert "exempt from robots.txt and per-site limits" in crawl_worker.log()
    assert EXEMPT in crawl_worker.log()


def test_the_redis_roles_acl_allows_everything_politeness_does(tmp_path: Path) -> None:
    """The app user of the pixcrawler_redis role (its own users.acl) runs the limiter's
    and the robots cache's commands and scripts; Redis's ACL LOG stays empty."""
    from pixcrawler.builder.robots import RobotsCache, Site
    from pixcrawler.builder.sites import Lease, SiteLimiter, site_keys
    from pixcrawler.builder.target import parse_target
    from pixcrawler.celery_core.config import load_settings

    own = RedisServer(tmp_path / "redis", "polite-acl-" + "y" * 16, shipped=True)
    own.start()
    try:
        settings = load_settings(settings_env(own, tmp_path / "images"))
        client = redis.Redis.from_url(own.url(1))
        limiter = SiteLimiter(client, settings)
        robots = RobotsCache(client, settings)
        lease = limiter.try_acquire("acl.example")
        assert isinstance(lease, Lease)
        limiter.release(lease)
        with site(robots_txt("User-agent: *\nDisallow: /x\n")) as server:
            target = parse_target(server.base + "/")
            where = Site.of(target)
            assert robots.cached(where) is None
            token = robots.try_lock(where)
            assert token is not None
            assert robots.fetch(where, token).state == "rules"
            fresh = RobotsCache(client, settings).cached(where)  # from Redis, not the memo
            assert fresh is not None
            assert fresh.state == "rules"
        admin = own.client(1)
        assert admin.ttl(where.key) > 0
        assert all(admin.pttl(key) > 0 for key in site_keys("acl.example") if admin.exists(key))
        assert not admin.acl_log(), "the app user was refused something by the role's ACL"
    finally:
        own.stop()
