"""Downloading: the SSRF guard, schemes, size caps, sniffing and image inspection.

Downloads go only to the loopback server these tests start; every address the guard is
asked about beyond that is an IP literal, so no name is ever looked up over the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from pixcrawler.builder.fetch import (
    download,
    http_client,
    is_forbidden,
    resolve_checked,
    sniff,
)
from pixcrawler.builder.target import parse_target
from pixcrawler.celery_core.config import CelerySettings, Network, load_settings
from pixcrawler.celery_core.errors import TaskError, TransientError
from pixcrawler.storage.local import LocalStore
from pixcrawler.validator.images import inspect_image
from tests.support import images
from tests.support.harness import wait_for
from tests.support.http_fixtures import LoopbackHTTPServer, Route, serving

LOOPBACK: list[Network] = [ip_network("127.0.0.0/8")]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.251",  # multicast
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "2002:a00:1::1",  # 6to4 around 10.0.0.1
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
        "ff02::1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden(ip_address(address), [])


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden(ip_address(address), [])


def test_allowed_networks_open_exactly_what_they_list() -> None:
    allowed: list[Network] = [ip_network("10.20.0.0/16"), ip_network("fd00:1::/64")]
    assert not is_forbidden(ip_address("10.20.3.4"), allowed)
    assert not is_forbidden(ip_address("::ffff:10.20.3.4"), allowed)
    assert not is_forbidden(ip_address("fd00:1::5"), allowed)
    assert is_forbidden(ip_address("10.21.0.1"), allowed)
    assert is_forbidden(ip_address("fd00:2::5"), allowed)
    assert is_forbidden(ip_address("127.0.0.1"), allowed)
    assert is_forbidden(ip_address("169.254.169.254"), allowed)


def test_allowed_networks_come_from_the_setting() -> None:
    s = load_settings({"PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"})
    assert not is_forbidden(ip_address("127.0.0.1"), s.crawl_allowed_networks)
    assert not is_forbidden(ip_address("::1"), s.crawl_allowed_networks)
    assert is_forbidden(ip_address("10.0.0.1"), s.crawl_allowed_networks)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "169.254.169.254", "localhost"])
def test_resolve_checked_refuses_forbidden_destinations(host: str) -> None:
    with pytest.raises(TaskError) as info:
        resolve_checked(host, 80, [])
    assert info.value.code == "forbidden_destination"
    assert not info.value.retryable


def test_resolve_checked_returns_the_checked_address() -> None:
    assert resolve_checked("127.0.0.1", 80, LOOPBACK) == "127.0.0.1"
    assert resolve_checked("localhost", 80, LOOPBACK) == "127.0.0.1"
    with pytest.raises(TaskError):
        resolve_checked("::1", 80, LOOPBACK)


# --- sniffing and image inspection ------------------------------------------------------


def test_sniff_recognises_real_encoder_output() -> None:
    assert sniff(images.png("sniff")) == ("png", "image/png")
    assert sniff(images.jpeg("sniff")) == ("jpg", "image/jpeg")
    assert sniff(b"GIF89a" + b"\x00" * 10) == ("gif", "image/gif")
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == ("webp", "image/webp")


@pytest.mark.parametrize(
    "head",
    [b"", b"<!doctype html><html>", b"RIFF\x10\x00\x00\x00WAVEfmt ", b"%PDF-1.7", b"\x89PNX"],
)
def test_sniff_refuses_non_images(head: bytes) -> None:
    assert sniff(head) is None


@pytest.fixture
def settings(tmp_path: Path) -> CelerySettings:
    return load_settings(
        {
            "PIXCRAWLER_CELERY_STORAGE_DIR": str(tmp_path / "store"),
            "PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8",
            "PIXCRAWLER_CELERY_CRAWL_MAX_BYTES": str(256 * 1024),
            "PIXCRAWLER_CELERY_CRAWL_MAX_REDIRECTS": "3",
        }
    )


def test_inspect_accepts_png_and_jpeg(settings: CelerySettings) -> None:
    png = inspect_image(images.png("inspect", (40, 33)), settings)
    assert (png.format, png.width, png.height, png.mode) == ("PNG", 40, 33, "RGB")
    jpg = inspect_image(images.jpeg("inspect"), settings)
    assert jpg.format == "JPEG"
    assert png.sha256 != jpg.sha256


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (images.tiny_png("inspect"), "too_small"),
        (b"<html>not an image</html>", "not_an_image"),
        (images.png("truncated")[:-40], "corrupt_image"),
        (images.bomb_png(), "decompression_bomb"),
    ],
)
def test_inspect_refuses_with_a_specific_code(
    settings: CelerySettings, data: bytes, code: str
) -> None:
    with pytest.raises(TaskError) as info:
        inspect_image(data, settings)
    assert info.value.code == code


def test_our_pixel_guard_fires_before_pillows(settings: CelerySettings) -> None:
    """8000x8000 is under Pillow's own limit but over VALIDATION_MAX_PIXELS (50M)."""
    with pytest.raises(TaskError) as info:
        inspect_image(images.bomb_png(8000, 8000), settings)
    assert info.value.code == "decompression_bomb"
    assert info.value.details == {"width": 8000, "height": 8000}


def test_inspect_refuses_formats_not_listed(tmp_path: Path) -> None:
    s = load_settings({"PIXCRAWLER_CELERY_VALIDATION_ALLOWED_FORMATS": "JPEG"})
    with pytest.raises(TaskError) as info:
        inspect_image(images.png("fmt"), s)
    assert info.value.code == "format_not_allowed"


# --- downloads from the loopback server ------------------------------------------------


@pytest.fixture(scope="module")
def http(http_server: LoopbackHTTPServer) -> LoopbackHTTPServer:
    return http_server


@pytest.fixture
def store(settings: CelerySettings) -> LocalStore:
    return LocalStore(settings.storage_dir)


def _leftovers(store: LocalStore) -> list[str]:
    return [e.name for e in store.entries() if e.temporary]


def test_download_stores_by_content(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    body = images.png("download")
    url = http.add(Route(body=body, content_type="text/plain"))  # the header is not trusted
    result = download(url, store, settings)
    assert result.content_type == "image/png"
    path = Path(result.stored.ref)
    assert path.read_bytes() == body
    assert path.suffix == ".png"
    assert path.parent.parent == settings.storage_dir
    assert not result.stored.existed
    again = download(url, store, settings)
    assert again.stored.ref == result.stored.ref
    assert again.stored.existed
    assert _leftovers(store) == []


def test_download_strips_credentials_from_the_recorded_url(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http.add(Route(body=images.png("creds")))
    with_creds = url.replace("http://", "http://user:pw-in-url@")
    result = download(with_creds, store, settings)
    assert result.url == url
    assert "pw-in-url" not in repr(result)


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (404, TaskError, "http_error"),
        (410, TaskError, "http_error"),
        (503, TransientError, "http_error"),
        (429, TransientError, "http_error"),
    ],
)
def test_download_http_errors(
    http: LoopbackHTTPServer,
    settings: CelerySettings,
    status: int,
    error: type[TaskError],
    code: str,
    store: LocalStore,
) -> None:
    url = http.add(Route(statuses=[status]))
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert type(info.value) is error
    assert info.value.code == code
    assert info.value.details == {"status_code": status}


def test_download_refuses_non_images_and_leaves_nothing(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http.add(Route(body=b"<html>hello</html>", content_type="image/png"))
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == "not_an_image"
    assert list(store.entries()) == []


def test_download_reports_an_empty_body(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http.add(Route(body=b"", content_type="image/png"))
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == "empty_body"
    assert list(store.entries()) == []


def test_download_refuses_a_huge_declared_length(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http.add(Route(declared_length=10**9))
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == "too_large"
    assert list(store.entries()) == []


def test_download_stops_a_huge_body_without_length(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http.add(Route(stream_bytes=4 * settings.crawl_max_bytes))
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == "too_large"
    assert list(store.entries()) == []


def test_redirects_are_followed_and_checked(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    target = http.add(Route(body=images.png("redirect")))
    hop = http.add(Route(statuses=[302], headers={"Location": target}))
    assert download(hop, store, settings).url == hop
    assert http.hits(target) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:192.168.0.1]/",
    ],
)
def test_redirect_to_a_forbidden_address_is_refused(
    http: LoopbackHTTPServer, settings: CelerySettings, location: str, store: LocalStore
) -> None:
    hop = http.add(Route(statuses=[301], headers={"Location": location}))
    with pytest.raises(TaskError) as info:
        download(hop, store, settings)
    assert info.value.code == "forbidden_destination"


def test_redirect_loops_end(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    route = Route(statuses=[302])
    url = http.add(route)
    route.headers["Location"] = url
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == "too_many_redirects"
    assert http.hits(url) == settings.crawl_max_redirects + 1


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("file:///etc/passwd", "unsupported_scheme"),
        ("ftp://127.0.0.1/a.png", "unsupported_scheme"),
        ("gopher://127.0.0.1:70/_", "unsupported_scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "unsupported_scheme"),
        ("//127.0.0.1/a.png", "unsupported_scheme"),
        ("http:///a.png", "invalid_url"),
        ("http://127.0.0.1:99999/a.png", "invalid_url"),
        ("", "invalid_url"),
    ],
)
def test_bad_urls_are_refused_before_any_connection(
    settings: CelerySettings, url: str, code: str, store: LocalStore
) -> None:
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == code
    assert not info.value.retryable


def test_redirect_to_a_non_http_scheme_is_refused(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    hop = http.add(Route(statuses=[302], headers={"Location": "file:///etc/shadow"}))
    with pytest.raises(TaskError) as info:
        download(hop, store, settings)
    assert info.value.code == "unsupported_scheme"


@pytest.mark.parametrize(
    "url",
    ["http://[zz::1]/a.png", "http://[fe80::1%25eth0]/a.png", "http://[::1/a.png"],
)
def test_malformed_hosts_are_invalid_urls_not_payloads(
    settings: CelerySettings, url: str, store: LocalStore
) -> None:
    """urlsplit raises ValueError for these; it was reported as ``invalid_payload``."""
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.code == "invalid_url"


# --- the total time limit ---------------------------------------------------------------


@pytest.fixture
def quick_deadline(tmp_path: Path) -> CelerySettings:
    """A one-second total limit, far under what a trickling server needs."""
    return load_settings(
        {
            "PIXCRAWLER_CELERY_STORAGE_DIR": str(tmp_path / "store"),
            "PIXCRAWLER_CELERY_CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8",
            "PIXCRAWLER_CELERY_CRAWL_READ_TIMEOUT": "5",
            "PIXCRAWLER_CELERY_CRAWL_TOTAL_TIMEOUT": "1",
        }
    )


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_trickling_server_hits_the_total_timeout(
    http: LoopbackHTTPServer, quick_deadline: CelerySettings, part: str
) -> None:
    """One byte every 50 ms, each well within the read timeout: about 4 s of headers or
    13 s of body, which a per-read timeout alone lets through.

    The proof is the server's: the crawler hung up before the response was complete
    (before the fix it read every byte, then noticed the time).
    """
    store = LocalStore(quick_deadline.storage_dir)
    body = images.png("drip", (8, 8))
    url = http.add(Route(body=body, content_type="image/png", drip=0.05, drip_part=part))
    with pytest.raises(TransientError) as info:
        download(url, store, quick_deadline)
    assert info.value.code == "timeout"
    assert "1.0 s" in info.value.message
    assert _leftovers(store) == []
    wait_for(lambda: bool(http.ends(url)), 30, "the trickling response to end")
    assert http.ends(url) == ["cut off"]


def test_the_deadline_leaves_a_fast_download_alone(
    http: LoopbackHTTPServer, quick_deadline: CelerySettings
) -> None:
    url = http.add(Route(body=images.png("fast", (8, 8))))
    download(url, LocalStore(quick_deadline.storage_dir), quick_deadline)
    # Kept-alive connections from the pool obey the next download's deadline, not this one's.
    download(url, LocalStore(quick_deadline.storage_dir), quick_deadline)


# --- credentials in the URL -------------------------------------------------------------

PASSWORD = "pw:with@chars"


def _with_credentials(url: str, user: str = "crawler", password: str = PASSWORD) -> str:
    from urllib.parse import quote

    return url.replace("http://", f"http://{quote(user, safe='')}:{quote(password, safe='')}@")


def test_url_credentials_are_sent_as_basic_auth(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http.add(Route(body=images.png("basic"), auth=("crawler", PASSWORD)))
    result = download(_with_credentials(url), store, settings)
    assert result.url == url
    assert PASSWORD not in repr(result)
    with pytest.raises(TaskError) as info:
        download(url, store, settings)
    assert info.value.details == {"status_code": 401}


def test_credentials_follow_a_redirect_only_within_their_origin(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    body = images.png("basic-redirect")
    same = http.add(Route(body=body, auth=("crawler", PASSWORD)))
    relative = http.add(Route(statuses=[302], headers={"Location": same.removeprefix(http.base)}))
    download(_with_credentials(relative), store, settings)
    assert http.requests(same)[0]["Authorization"].startswith("Basic ")
    # localhost is another origin than 127.0.0.1, though the same server.
    elsewhere = http.add(Route(body=body))
    away = elsewhere.replace("127.0.0.1", "localhost")
    hop = http.add(Route(statuses=[302], headers={"Location": away}))
    download(_with_credentials(hop), store, settings)
    assert http.requests(hop)[0]["Authorization"].startswith("Basic ")
    assert "Authorization" not in http.requests(elsewhere)[0]


# --- IPv6 literals and internationalised names ------------------------------------------


@pytest.fixture(scope="module")
def http6() -> Iterator[LoopbackHTTPServer]:
    with serving("::1") as server:
        yield server


@pytest.fixture
def settings6(settings: CelerySettings) -> CelerySettings:
    return settings.model_copy(
        update={"crawl_allowed_networks": [ip_network("127.0.0.0/8"), ip_network("::1/128")]}
    )


def test_an_ipv6_literal_gets_a_bracketed_host_header(
    http6: LoopbackHTTPServer,
    http: LoopbackHTTPServer,
    settings6: CelerySettings,
    store: LocalStore,
) -> None:
    url = http6.add(Route(body=images.png("ipv6")))
    assert download(url, store, settings6).url == url
    assert http6.requests(url)[0]["Host"] == f"[::1]:{http6.port}"
    # A redirect from an IPv4 server to an IPv6 literal, without an explicit port there.
    target = http6.add(Route(body=images.png("ipv6-redirect")))
    hop = http.add(Route(statuses=[302], headers={"Location": target}))
    download(hop, store, settings6)
    assert http6.requests(target)[0]["Host"] == f"[::1]:{http6.port}"


def test_ipv6_destinations_obey_the_allowed_networks(
    http6: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    url = http6.add(Route(body=images.png("ipv6-refused")))
    with pytest.raises(TaskError) as info:
        download(url, store, settings)  # only 127.0.0.0/8 allowed
    assert info.value.code == "forbidden_destination"
    assert http6.hits(url) == 0


def test_an_internationalised_name_is_sent_as_its_a_label(
    http: LoopbackHTTPServer, settings: CelerySettings
) -> None:
    """The request the crawler builds for an IDN host, sent to the loopback server.

    The sandbox cannot make an IDN name resolve to loopback (no /etc/hosts edits on a
    shared machine, no nss-myhostname), so the address is given here instead of looked
    up: everything after the lookup is the code a download runs.
    """
    url = http.add(Route(body=images.png("idn")))
    path = url.removeprefix(http.base)
    target = parse_target(
        f"http://crawler:{PASSWORD.replace('@', '%40')}@Bücher.Example:{http.port}{path}"
    )
    assert target.host == "xn--bcher-kva.example"
    client = http_client(settings)
    with client.get(target, "127.0.0.1") as response:
        assert response.status_code == 200
    [seen] = http.requests(url)
    assert seen["Host"] == f"xn--bcher-kva.example:{http.port}"
    assert seen["Authorization"].startswith("Basic ")


# --- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("100000", 300.0), ("soon", None), (None, None)]
)
def test_retry_after_is_reported_and_capped(
    http: LoopbackHTTPServer,
    settings: CelerySettings,
    store: LocalStore,
    header: str | None,
    expected: float | None,
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    url = http.add(Route(statuses=[429], headers=headers))
    with pytest.raises(TransientError) as info:
        download(url, store, settings)
    assert info.value.details.get("retry_after") == expected


def test_retry_after_is_capped_by_the_longest_retry_delay_too(
    http: LoopbackHTTPServer, settings: CelerySettings, store: LocalStore
) -> None:
    """TASK_RETRY_BACKOFF_MAX stays below VISIBILITY_TIMEOUT (config); so does the wait."""
    short = settings.model_copy(update={"task_retry_backoff_max": 20})
    url = http.add(Route(statuses=[503], headers={"Retry-After": "100"}))
    with pytest.raises(TransientError) as info:
        download(url, store, short)
    assert info.value.details["retry_after"] == 20
