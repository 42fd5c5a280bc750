"""robots.txt (RFC 9309): fetched once per site for the whole cluster, kept in Redis.

A site is scheme, host and port (RFC 9309 2.3). Its robots.txt is fetched like an image
(fetch.py): the SSRF guard checks every address, the connection goes to the checked one,
the shared client and ``CRAWL_TOTAL_TIMEOUT`` bound it; no credentials are sent. What
the fetch found is kept in Redis under ``pixcrawler:robots:<site>`` for
``CRAWL_ROBOTS_CACHE_TTL`` (24 h at most, as the RFC asks), so every worker on every host
uses one copy, and in each process (parsed) until that copy expires. While one worker
fetches a site's robots.txt it holds a short lock (``...:lock``); the others treat the
site as busy for a moment and work on other URLs until the answer is cached.

The RFC's rules, and what a URL's outcome then says:

- 2xx: the rules, parsed by Protego, matched against the User-Agent's product token
  (``CRAWL_USER_AGENT`` without the version); a disallowed URL is an error
  ``disallowed_by_robots``, final. Only the first ``MAX_BYTES`` (the RFC's least, 500
  KiB) are read; the rest is ignored, not an error (cut at the last whole line).
- up to five redirects are followed (each hop checked); more: no robots.txt.
- 4xx: no robots.txt, everything is allowed (``"robots": "absent"`` in the outcome).
- 5xx, 429, a network error or a timeout: the site is unreachable, so for now everything
  is disallowed: each URL is ``robots_unavailable``, retryable, and the task retries it
  when this state expires (``failure_ttl``: 30 s, or the Retry-After cap if shorter; kept
  in Redis too, so a batch of 1,000 URLs of a failing site asks once, not 1,000 times).
  429 is the RFC's 4xx, but it says "not now", not "there are no rules", and allowing
  everything in answer to it would be the opposite of polite.
- A refusal of the site itself (its name resolves to a private address, or does not
  resolve) is the URL's own error, as its download would have been. A redirect to
  somewhere refused or not fetchable counts as no robots.txt.

Cached values are small: ``A`` (allow all), ``U`` (unreachable), or ``R`` plus the
zlib-compressed robots.txt as read, and always with a TTL (the Redis role runs with
``noeviction``).
"""

from __future__ import annotations

import secrets
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin

import redis
from protego import Protego

from pixcrawler.builder.client import Response
from pixcrawler.builder.deadline import deadline
from pixcrawler.builder.fetch import http_client, resolve_checked
from pixcrawler.builder.target import Target, bracketed, parse_target
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.errors import TaskError

ROBOTS_PREFIX = "pixcrawler:robots:"
#: RFC 9309 2.5: parse at least 500 kibibytes.
MAX_BYTES = 500 * 1024
#: RFC 9309 2.3.1.2: follow at least five consecutive redirects.
MAX_REDIRECTS = 5
#: Longest an unreachable robots.txt stays "disallow all" before it is asked again (s).
FAILURE_TTL = 30
#: Parsed robots.txt files kept per process.
MEMO_SIZE = 1024

State = Literal["rules", "absent", "unreachable"]


@dataclass(frozen=True)
class Site:
    """Whose robots.txt applies to a URL: scheme, host and port."""

    scheme: str
    host: str
    port: int
    explicit_port: bool

    @classmethod
    def of(cls, target: Target) -> Site:
        return cls(target.scheme, target.host, target.port, target.explicit_port)

    @property
    def key(self) -> str:
        return f"{ROBOTS_PREFIX}{self.scheme}://{bracketed(self.host)}:{self.port}"

    def robots_target(self) -> Target:
        return Target(self.scheme, self.host, self.port, self.explicit_port, "/robots.txt")


@dataclass(frozen=True)
class Policy:
    """A site's robots.txt as far as this crawler is concerned."""

    state: State
    parser: Protego | None = None
    #: For ``unreachable``: seconds until it is asked again.
    retry_after: float | None = None

    def allows(self, path: str, token: str) -> bool:
        if self.state == "unreachable":
            return False
        return self.parser is None or self.parser.can_fetch(path, token)

    def crawl_delay(self, token: str) -> float | None:
        return self.parser.crawl_delay(token) if self.parser is not None else None


def _decode(raw: bytes, ttl_ms: int) -> Policy:
    kind, data = raw[:1], raw[1:]
    if kind == b"R":
        text = zlib.decompress(data).decode("utf-8", errors="replace")
        return Policy("rules", Protego.parse(text))
    if kind == b"U":
        return Policy("unreachable", retry_after=max(ttl_ms, 0) / 1000)
    return Policy("absent")


def _encode(state: State, body: bytes) -> bytes:
    if state == "rules":
        return b"R" + zlib.compress(body)
    return b"U" if state == "unreachable" else b"A"


def cut(body: bytes) -> bytes:
    """At most MAX_BYTES, ending at a whole line: a rule cut in half could mean another."""
    if len(body) <= MAX_BYTES:
        return body
    head = body[:MAX_BYTES]
    end = max(head.rfind(b"\n"), head.rfind(b"\r"))
    return head[: end + 1] if end >= 0 else b""


def fetch_robots(site: Site, settings: CelerySettings) -> tuple[State, bytes]:
    """GET the site's robots.txt as an image download would be fetched, and judge it."""
    client = http_client(settings)
    target = site.robots_target()
    current = f"{site.scheme}://{target.host_header}/robots.txt"
    hops = 0  # redirects followed: a refusal after one is not the site's own
    try:
        with deadline(settings.crawl_total_timeout):
            for _ in range(MAX_REDIRECTS + 1):
                address = resolve_checked(target.host, target.port, settings.crawl_allowed_networks)
                with client.get(target, address, accept="text/plain, */*;q=0.5") as response:
                    if response.is_redirect:
                        hops += 1
                        current = urljoin(current, response.headers.get("location", ""))
                        target = parse_target(current)
                        target = Target(
                            target.scheme,
                            target.host,
                            target.port,
                            target.explicit_port,
                            target.path,
                        )  # no credentials from a Location header
                        continue
                    return _judge(response)
    except OSError:  # refused, reset, timed out, a bad response (client.ProtocolError)
        return "unreachable", b""
    except TaskError as exc:
        if exc.retryable:  # a name lookup that may work later
            return "unreachable", b""
        if hops == 0:
            raise  # the site itself is refused: its URLs get the refusal a download would
        return "absent", b""  # redirected somewhere that cannot be fetched: no rules
    return "absent", b""  # more redirects than the RFC asks to follow


def _judge(response: Response) -> tuple[State, bytes]:
    status = response.status_code
    if 200 <= status < 300:
        body = bytearray()
        for chunk in response.iter_bytes(64 * 1024):
            body += chunk
            if len(body) > MAX_BYTES:
                break
        return "rules", cut(bytes(body))
    if status == 429 or status >= 500:
        return "unreachable", b""
    if 400 <= status < 500:
        return "absent", b""
    return "unreachable", b""  # 1xx, 304, a 3xx without Location: nothing usable


def failure_ttl(settings: CelerySettings) -> int:
    """How long "unreachable" is kept: as long as the retry of its URLs waits (their
    ``retry_after``, capped like a server's Retry-After), so the retry asks again."""
    cap = min(FAILURE_TTL, settings.crawl_retry_after_max, settings.task_retry_backoff_max)
    return max(1, int(cap))


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RobotsCache:
    """Each site's policy: from this process's memo, else Redis, else fetched (locked)."""

    def __init__(self, client: redis.Redis, settings: CelerySettings) -> None:
        self._client = client
        self._settings = settings
        self._unlock: Any = client.register_script(_UNLOCK)
        self._memo: OrderedDict[str, tuple[float, Policy]] = OrderedDict()
        self._memo_lock = threading.Lock()
        #: A lock outlives the fetch it guards; an expired one lets another worker try.
        self._lock_ms = int((settings.crawl_total_timeout + 5) * 1000)

    def cached(self, site: Site) -> Policy | None:
        """The site's policy if some worker has it, else None (then: :meth:`try_lock`)."""
        key = site.key
        now = time.monotonic()
        with self._memo_lock:
            entry = self._memo.get(key)
            if entry is not None and entry[0] > now:
                self._memo.move_to_end(key)
                policy = entry[1]
                if policy.state == "unreachable":
                    policy = Policy("unreachable", retry_after=max(entry[0] - now, 0.0))
                return policy
        pipe = self._client.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        raw, ttl_ms = pipe.execute()
        if raw is None:
            return None
        policy = _decode(bytes(raw), int(ttl_ms))
        self._remember(key, policy, int(ttl_ms))
        return policy

    def _remember(self, key: str, policy: Policy, ttl_ms: int) -> None:
        if ttl_ms <= 0:
            return
        with self._memo_lock:
            self._memo[key] = (time.monotonic() + ttl_ms / 1000, policy)
            self._memo.move_to_end(key)
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)

    def try_lock(self, site: Site) -> str | None:
        """The right to fetch *site*'s robots.txt, or None while another worker has it."""
        token = secrets.token_hex(8)
        if self._client.set(f"{site.key}:lock", token, nx=True, px=self._lock_ms):
            return token
        return None

    def unlock(self, site: Site, token: str) -> None:
        self._unlock(keys=[f"{site.key}:lock"], args=[token])

    def fetch(self, site: Site, token: str) -> Policy:
        """Fetch, cache for every worker, and unlock; a refused site raises TaskError."""
        try:
            state, body = fetch_robots(site, self._settings)
            ttl = (
                failure_ttl(self._settings)
                if state == "unreachable"
                else self._settings.crawl_robots_cache_ttl
            )
            self._client.set(site.key, _encode(state, body), ex=ttl)
        finally:
            self.unlock(site, token)
        policy = _decode(_encode(state, body), ttl * 1000)
        self._remember(site.key, policy, ttl * 1000)
        return policy
