"""The crawler's HTTP client (client.py) against loopback servers the tests start.

What the standard library gives a client by itself (connection to the name, SNI, Host)
is done by hand here, since the connection goes to the checked address: these tests
show each part on the wire. The total deadline and the fetch-level behaviour (redirects,
credentials, IPv6, IDN) are test_fetch.py's.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixcrawler.builder.client import Client, ProtocolError
from pixcrawler.builder.target import parse_target
from tests.support import images
from tests.support.harness import TlsFiles
from tests.support.http_fixtures import LoopbackHTTPServer, Route, serving

NAME = "images.pixcrawler.test"


def _client() -> Client:
    return Client(connect_timeout=5, read_timeout=5, user_agent="PixCrawler-test/1")


def _get(client: Client, url: str, address: str = "127.0.0.1") -> tuple[int, bytes]:
    with client.get(parse_target(url), address) as response:
        return response.status_code, b"".join(response.iter_bytes(65536))


@pytest.fixture(scope="module")
def kept_alive() -> Iterator[LoopbackHTTPServer]:
    with serving(keep_alive=True) as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles(tmp_path_factory.mktemp("tls"), names=(NAME,))


@pytest.fixture
def trusting(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test CA as the system's CA store (what ca-certificates is on a host)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    return tls_files.ca


def test_a_kept_alive_connection_serves_the_next_get(kept_alive: LoopbackHTTPServer) -> None:
    body = images.png("kept-alive")
    url = kept_alive.add(Route(body=body))
    client = _client()
    before = kept_alive.connections
    assert [_get(client, url) for _ in range(3)] == [(200, body)] * 3
    assert kept_alive.connections - before == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_once(
    kept_alive: LoopbackHTTPServer,
) -> None:
    """The server hangs up after each answer without saying so: every GET after the
    first finds its kept-alive connection closed, and is sent again on a new one."""
    body = images.png("hang-up")
    url = kept_alive.add(Route(body=body, hang_up=True))
    client = _client()
    before = kept_alive.connections
    assert [_get(client, url) for _ in range(3)] == [(200, body)] * 3
    assert kept_alive.connections - before == 3
    assert kept_alive.hits(url) == 3  # each GET reached the server once


def test_a_body_not_read_to_its_end_closes_the_connection(
    kept_alive: LoopbackHTTPServer,
) -> None:
    url = kept_alive.add(Route(body=b"x" * 200_000))
    client = _client()
    before = kept_alive.connections
    for _ in range(2):
        with client.get(parse_target(url), "127.0.0.1") as response:
            next(response.iter_bytes(1024))  # the rest is never read
    assert kept_alive.connections - before == 2


def test_https_goes_to_the_checked_address_with_the_names_sni_and_certificate(
    tls_files: TlsFiles, trusting: Path
) -> None:
    body = images.png("tls")
    with serving(keep_alive=True, tls=tls_files) as server:
        url = server.add(Route(body=body)).replace("127.0.0.1", NAME)
        assert url.startswith(f"https://{NAME}:")
        assert _get(_client(), url) == (200, body)
        assert server.server_names == [NAME]
        assert server.requests(url)[0]["Host"] == f"{NAME}:{server.port}"


def test_https_refuses_an_unknown_ca_and_a_certificate_for_another_name(
    tls_files: TlsFiles, trusting: Path, tmp_path: Path
) -> None:
    stranger = TlsFiles(tmp_path / "stranger", names=(NAME,))  # a CA nobody trusts
    with serving(tls=stranger) as server:
        url = server.add(Route(body=b"never")).replace("127.0.0.1", NAME)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            _get(_client(), url)
        assert server.hits(url) == 0
    with serving(tls=tls_files) as server:  # trusted CA, but asked for another name
        url = server.add(Route(body=b"never")).replace("127.0.0.1", "other.pixcrawler.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            _get(_client(), url)
        assert server.hits(url) == 0


def test_plain_http_to_a_tls_server_is_a_protocol_error(
    tls_files: TlsFiles, kept_alive: LoopbackHTTPServer
) -> None:
    """A response that is not HTTP is a ProtocolError, a ConnectionError: transient."""
    with serving(tls=tls_files) as server:
        url = server.add(Route(body=b"never")).replace("https://", "http://")
        with pytest.raises((ProtocolError, ConnectionResetError)):
            _get(_client(), url)
    assert issubclass(ProtocolError, ConnectionError)
