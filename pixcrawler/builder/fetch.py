"""Download one image safely: SSRF guard, size cap, timeouts, sniffed type, all-or-nothing store.

The destination is resolved once, every address is checked, and the connection goes to
the checked address (Host header and TLS SNI keep the name), so a DNS answer that
changes between check and connect (rebinding) cannot reach a private address. Each
redirect hop is checked the same way.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from threading import Lock
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from pixcrawler.celery_core.config import CelerySettings, Network
from pixcrawler.celery_core.errors import TaskError, TransientError
from pixcrawler.celery_core.redact import strip_userinfo
from pixcrawler.storage import ImageStore, StoredObject

CHUNK = 64 * 1024

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


_client: httpx.Client | None = None
_client_lock = Lock()


def _http_client(settings: CelerySettings) -> httpx.Client:
    """One pooled client per process, created after fork (prefork) and shared by threads."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=httpx.Timeout(
                    settings.crawl_read_timeout, connect=settings.crawl_connect_timeout
                ),
                follow_redirects=False,
                trust_env=False,  # never route through a proxy from the environment
                headers={"User-Agent": settings.crawl_user_agent, "Accept": "image/*"},
            )
        return _client


def _pinned(url: str, settings: CelerySettings) -> tuple[str, str, str]:
    """(URL with the checked IP as host, Host header, TLS server name)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TaskError(
            "unsupported_scheme", f"only http and https URLs are crawled, not {parts.scheme!r}"
        )
    host = parts.hostname
    if not host:
        raise TaskError("invalid_url", "URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TaskError("invalid_url", "URL has an invalid port") from None
    address = resolve_checked(host, port, settings.crawl_allowed_networks)
    literal = f"[{address}]" if ":" in address else address
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    netloc = f"{literal}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, host


def download(url: str, store: ImageStore, settings: CelerySettings) -> Download:
    """Fetch *url* into *store*; raise TaskError/TransientError on failure."""
    if not isinstance(url, str) or not url:
        raise TaskError("invalid_url", "URL must be a non-empty string")
    client = _http_client(settings)
    deadline = time.monotonic() + settings.crawl_total_timeout
    current = url
    for _hop in range(settings.crawl_max_redirects + 1):
        target, host_header, server_name = _pinned(current, settings)
        request = client.build_request(
            "GET", target, headers={"Host": host_header}, extensions={"sni_hostname": server_name}
        )
        response = client.send(request, stream=True)
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                current = urljoin(current, location)
                continue
            return _store(response, strip_userinfo(url), store, settings, deadline)
        finally:
            response.close()
    raise TaskError("too_many_redirects", f"more than {settings.crawl_max_redirects} redirects")


def _store(
    response: httpx.Response,
    url: str,
    store: ImageStore,
    settings: CelerySettings,
    deadline: float,
) -> Download:
    status = response.status_code
    if status >= 500 or status == 429:
        raise TransientError("http_error", f"HTTP {status}", {"status_code": status})
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
            if time.monotonic() > deadline:
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
