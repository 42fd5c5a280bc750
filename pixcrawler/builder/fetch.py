"""Download one image safely: SSRF guard, size cap, timeouts, sniffed type, all-or-nothing store.

The destination is resolved once, every address is checked, and the connection goes to
the checked address (Host header and TLS SNI keep the name), so a DNS answer that
changes between check and connect (rebinding) cannot reach a private address. Each
redirect hop is checked the same way, and passes the crawl's politeness again (*hop_guard*:
the robots.txt and the slots of the site it leads to, polite.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from threading import Lock
from urllib.parse import urljoin

from pixcrawler.builder.client import Client, Response
from pixcrawler.builder.deadline import deadline, expired
from pixcrawler.builder.retry_after import retry_after_seconds
from pixcrawler.builder.target import Target, parse_target
from pixcrawler.celery_core.config import CelerySettings, Network
from pixcrawler.celery_core.errors import TaskError, TransientError
from pixcrawler.celery_core.redact import strip_userinfo
from pixcrawler.storage import ImageStore, StoredObject

CHUNK = 64 * 1024

#: Called for every redirect hop with the first request's host and the hop's target; the
#: request is sent inside the context it returns (which may raise to refuse the hop).
HopGuard = Callable[[str, Target], AbstractContextManager[object]]

#: Leading bytes of the formats we accept, mapped to (extension, MIME type).
SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png", "image/png"),
    (b"GIF87a", 0, "gif", "image/gif"),
    (b"GIF89a", 0, "gif", "image/gif"),
    (b"WEBP", 8, "webp", "image/webp"),
    (b"BM", 0, "bmp", "image/bmp"),
    (b"II*\x00", 0, "tif", "image/tiff"),
    (b"MM\x00*", 0, "tif", "image/tiff"),
)


@dataclass(frozen=True)
class Download:
    url: str
    stored: StoredObject
    content_type: str
    status_code: int


def sniff(head: bytes) -> tuple[str, str] | None:
    """(extension, MIME type) from the file's first bytes; headers are not trusted."""
    for magic, offset, ext, mime in SIGNATURES:
        if head[offset : offset + len(magic)] == magic and (ext != "webp" or head[:4] == b"RIFF"):
            return ext, mime
    return None


#: IPv6 ranges that carry an IPv4 address in their low 32 bits and that Python calls
#: global: NAT64 (RFC 6052, RFC 8215) and the deprecated IPv4-compatible form.
_IPV4_IN_LOW_BITS = tuple(ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96"))


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address a translator or tunnel would really connect to, if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _IPV4_IN_LOW_BITS):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_forbidden(address: IPv4Address | IPv6Address, allowed: list[Network]) -> bool:
    """Anything not globally routable (private, loopback, link-local/metadata, ...).

    An IPv6 address that embeds an IPv4 one (6to4, NAT64, Teredo) is judged by both:
    where a 6to4 relay or NAT64 gateway exists, 2002:a00:1:: means 10.0.0.1.
    """
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return False
    if not address.is_global or address.is_multicast:
        return True
    embedded = _embedded_ipv4(address) if isinstance(address, IPv6Address) else None
    return embedded is not None and is_forbidden(embedded, allowed)


def resolve_checked(host: str, port: int, allowed: list[Network]) -> str:
    """Resolve *host* and return an address to connect to, or refuse the destination."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN,):
            raise TransientError("dns_error", f"cannot resolve {host}: {exc.strerror}") from None
        raise TaskError("dns_error", f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(ip_address(info[4][0]) for info in infos))
    forbidden = [a for a in addresses if is_forbidden(a, allowed)]
    if forbidden:
        raise TaskError(
            "forbidden_destination",
            f"{host} resolves to a non-public address ({forbidden[0]}); refused",
            {"address": str(forbidden[0])},
        )
    return str(addresses[0])


_client: Client | None = None
_client_lock = Lock()


def http_client(settings: CelerySettings) -> Client:
    """One client per process, created after fork (prefork) and shared by its threads.

    No connection limit: every download of every task in the process shares it, and each
    is bounded already (worker concurrency times ``CRAWL_BATCH_CONCURRENCY``).
    """
    global _client
    with _client_lock:
        if _client is None:
            _client = Client(
                connect_timeout=settings.crawl_connect_timeout,
                read_timeout=settings.crawl_read_timeout,
                user_agent=settings.user_agent_header,
            )
        return _client


def download(
    url: str, store: ImageStore, settings: CelerySettings, hop_guard: HopGuard | None = None
) -> Download:
    """Fetch *url* into *store*; raise TaskError/TransientError on failure.

    ``CRAWL_TOTAL_TIMEOUT`` bounds the whole download, every redirect hop included
    (deadline.py), except the name lookups, which the system resolver bounds.
    """
    if not isinstance(url, str) or not url:
        raise TaskError("invalid_url", "URL must be a non-empty string")
    client = http_client(settings)
    shown = strip_userinfo(url)
    with deadline(settings.crawl_total_timeout):
        try:
            return _follow(client, url, shown, store, settings, hop_guard)
        except TimeoutError:
            if not expired():
                raise
            raise TransientError(
                "timeout", f"download exceeded {settings.crawl_total_timeout} s"
            ) from None


def _follow(
    client: Client,
    url: str,
    shown: str,
    store: ImageStore,
    settings: CelerySettings,
    hop_guard: HopGuard | None,
) -> Download:
    target = parse_target(url)
    first_host = target.host
    #: Credentials go only to the origin they were written for (as browsers and
    #: requests do): a redirect elsewhere, or to plain http, does not get them.
    credentials = (target.origin, target.auth) if target.auth is not None else None
    current = url
    for hop in range(settings.crawl_max_redirects + 1):
        if target.auth is None and credentials is not None and credentials[0] == target.origin:
            target = replace(target, auth=credentials[1])
        guarded = hop_guard(first_host, target) if hop and hop_guard else nullcontext()
        with guarded:
            address = resolve_checked(target.host, target.port, settings.crawl_allowed_networks)
            with client.get(target, address) as response:
                if not response.is_redirect:
                    return _store(response, shown, store, settings)
                current = urljoin(current, response.headers.get("location", ""))
        target = parse_target(current)
    raise TaskError("too_many_redirects", f"more than {settings.crawl_max_redirects} redirects")


def _store(response: Response, url: str, store: ImageStore, settings: CelerySettings) -> Download:
    status = response.status_code
    if status >= 500 or status == 429:
        details: dict[str, object] = {"status_code": status}
        # TASK_RETRY_BACKOFF_MAX caps it too: the config keeps that below the visibility
        # timeout, so a retry waiting this long is not redelivered early.
        cap = min(settings.crawl_retry_after_max, settings.task_retry_backoff_max)
        wait = retry_after_seconds(response.headers.get("retry-after"), cap)
        if wait is not None and status in (429, 503):
            details["retry_after"] = wait
        raise TransientError("http_error", f"HTTP {status}", details)
    if status >= 400 or status < 200:
        raise TaskError("http_error", f"HTTP {status}", {"status_code": status})
    limit = settings.crawl_max_bytes
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TaskError("too_large", f"Content-Length {declared} exceeds {limit} bytes")
    with store.writer() as writer:
        for chunk in response.iter_bytes(CHUNK):
            writer.write(chunk)
            if writer.size > limit:
                raise TaskError("too_large", f"body exceeds {limit} bytes")
            if expired():  # a slow store counts too
                raise TransientError(
                    "timeout", f"download exceeded {settings.crawl_total_timeout} s"
                )
        if writer.size == 0:  # before sniffing, which would call it "not an image"
            raise TaskError("empty_body", "server returned no content")
        kind = sniff(writer.head)
        if kind is None:
            raise TaskError("not_an_image", "content is not a recognised image format")
        stored = writer.commit(kind[0])
    return Download(url=url, stored=stored, content_type=kind[1], status_code=status)
